package dev.vexil;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.file.Files;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import kotlinx.serialization.json.JsonElement;
import kotlinx.serialization.json.JsonElementKt;
import org.junit.jupiter.api.Test;

/** The SDK as a Java application uses it: builders, blocking calls, try-with-resources. */
class JavaApiTest {
    @Test
    void offlineClientFromJava() throws Exception {
        File ruleset = Files.createTempFile("vexil-java-", ".json").toFile();
        Files.writeString(ruleset.toPath(), "{\"flags\": [{\"key\": \"checkout\", \"kind\": \"bool\","
                + " \"variations\": [false, true], \"on\": true, \"fallthrough\": {\"variation\": 1},"
                + " \"rules\": [{\"id\": \"nl\", \"clauses\": [{\"attribute\": \"country\", \"op\": \"in\","
                + " \"values\": [\"NL\"]}], \"serve\": {\"variation\": 0}}]}], \"segments\": []}");
        VexilOptions options = new VexilOptions();
        options.setOffline(true);
        options.setBootstrap(ruleset.getPath());
        AtomicInteger changes = new AtomicInteger();
        try (VexilClient client = new VexilClient("vxl-server-java", options);
                Context alice = Context.builder("user", "alice").attr("country", "DE").build();
                Context jan = Context.multi(
                        Context.builder("user", "jan").attr("country", "NL"),
                        Context.builder("organization", "acme").attr("plan", "pro"))) {
            client.addChangeListener(change -> changes.incrementAndGet());
            assertEquals(Status.OFFLINE, client.awaitInitializationBlocking(1000));
            assertTrue(client.boolVariation("checkout", alice, false));
            EvaluationDetail<Boolean> detail = client.boolVariationDetail("checkout", jan, true);
            assertEquals(false, detail.getValue());
            assertEquals(EvaluationReason.Kind.RULE_MATCH, detail.getReason().getKind());
            assertEquals("nl", detail.getReason().getRuleId());
            assertEquals(Source.BOOTSTRAP, detail.getSource());
            Map<String, EvaluationDetail<JsonElement>> all = client.allFlags(alice);
            assertEquals(JsonElementKt.JsonPrimitive(true), all.get("checkout").getValue());
            client.track("purchase", alice);
            client.track("purchase", alice, 9.5);
            assertTrue(client.flushBlocking(1000));
            assertEquals("multi", jan.getKind());
        }
        InvalidConfigException error = assertThrows(InvalidConfigException.class,
                () -> new VexilClient("wrong", new VexilOptions()));
        assertTrue(error.getMessage().startsWith("sdkKey:"));
        assertTrue(error instanceof VexilException);
        Files.delete(ruleset.toPath());
    }
}
