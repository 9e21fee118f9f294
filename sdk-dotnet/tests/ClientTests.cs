using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using NUnit.Framework;
using Vexil;

namespace Vexil.Tests
{
    [TestFixture]
    public class ClientTests
    {
        static VexilClient Bootstrapped(params object[] flags)
        {
            var path = Paths.WriteRuleset(Paths.TempDir(), flags);
            return new VexilClient("vxl-server-test", new ClientOptions { Offline = true, Bootstrap = path });
        }

        static Dictionary<string, object> Flag(string key, string kind, object value) => new Dictionary<string, object>
        {
            { "key", key }, { "kind", kind }, { "variations", new List<object> { value } }, { "on", true },
            { "fallthrough", new Dictionary<string, object> { { "variation", 0 } } },
        };

        [Test]
        public void TestDataChangesReachTheClientAtOnce()
        {
            using (var data = new TestData())
            using (var alice = Context.Builder("user", "alice").Build())
            using (var bob = Context.Builder("user", "bob").Build())
            {
                data.SetValue("checkout", true);
                using (var client = new VexilClient("vxl-server-test", new ClientOptions { TestData = data }))
                {
                    Assert.AreEqual(ClientStatus.Ready, client.Status);
                    Assert.IsTrue(client.BoolVariation("checkout", alice, false));
                    var changed = new ManualResetEventSlim();
                    client.FlagsChanged += (sender, change) => changed.Set();
                    data.SetValue("checkout", false);
                    Assert.IsFalse(client.BoolVariation("checkout", alice, true));
                    Assert.IsTrue(changed.Wait(TimeSpan.FromSeconds(5)), "no change event");

                    data.UpdateFlag("{\"key\": \"banner\", \"kind\": \"string\", \"variations\": [\"plain\", \"gold\"], \"on\": true, " +
                        "\"rules\": [{\"id\": \"bob\", \"clauses\": [{\"attribute\": \"key\", \"op\": \"in\", \"values\": [\"bob\"]}], \"serve\": {\"variation\": 1}}], " +
                        "\"fallthrough\": {\"variation\": 0}}");
                    Assert.AreEqual("gold", client.StringVariation("banner", bob, "?"));
                    Assert.AreEqual("plain", client.StringVariation("banner", alice, "?"));
                    var e = Assert.Throws<VexilException>(() => data.UpdateFlag(
                        "{\"key\": \"banner\", \"kind\": \"string\", \"variations\": [\"x\"], \"on\": true, \"fallthrough\": {\"variation\": 4}}"));
                    Assert.AreEqual(VexilErrorCode.InvalidArgument, e.Code);
                    StringAssert.Contains("fallthrough", e.Message);
                    Assert.AreEqual("gold", client.StringVariation("banner", bob, "?"), "nothing changed");
                    Assert.IsTrue(data.RemoveFlag("banner"));
                    Assert.IsFalse(data.RemoveFlag("banner"));
                    Assert.AreEqual("?", client.StringVariation("banner", bob, "?"));
                }
            }
        }

        [Test]
        public void AsyncWaitsBlockNoThread()
        {
            // Nothing listens on port 9: each wait ends at its timeout, still initializing.
            using (var client = new VexilClient("vxl-server-test", new ClientOptions { Endpoint = "http://127.0.0.1:9", EventsEnabled = false }))
            {
                var started = Stopwatch.StartNew();
                var waits = new System.Threading.Tasks.Task<ClientStatus>[50];
                for (var i = 0; i < waits.Length; i++) waits[i] = client.WaitForInitializationAsync(TimeSpan.FromMilliseconds(300));
                Assert.IsTrue(System.Threading.Tasks.Task.WaitAll(waits, TimeSpan.FromSeconds(10)));
                foreach (var wait in waits) Assert.AreEqual(ClientStatus.Initializing, wait.Result);
                // Fifty waits of 0.3 s at once end together: none held a pool thread.
                Assert.Less(started.Elapsed, TimeSpan.FromSeconds(5));
                Assert.IsTrue(client.FlushAsync(TimeSpan.FromSeconds(1)).Result, "nothing to deliver");
            }
            IAsyncDisposable disposable = new VexilClient("vxl-server-test", new ClientOptions { Offline = true });
            Assert.IsTrue(disposable.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(10)));
            Assert.AreEqual(ClientStatus.Closed, ((VexilClient)disposable).Status);
        }

        [Test]
        public void InvalidInputThrowsWithItsCode()
        {
            var e = Assert.Throws<VexilException>(() => new VexilClient("nope", new ClientOptions { Offline = true }));
            Assert.AreEqual(VexilErrorCode.InvalidKey, e.Code);
            e = Assert.Throws<VexilException>(() => new VexilClient("vxl-server-x", new ClientOptions { Endpoint = "not a url" }));
            Assert.AreEqual(VexilErrorCode.InvalidEndpoint, e.Code);
            e = Assert.Throws<VexilException>(() => Context.Parse("{\"kind\": \"user\"}"));
            Assert.AreEqual(VexilErrorCode.InvalidContext, e.Code);
            StringAssert.Contains("key", e.Message);
            e = Assert.Throws<VexilException>(() => Context.Parse("{\"kind\": "));
            Assert.AreEqual(VexilErrorCode.InvalidJson, e.Code);
            e = Assert.Throws<VexilException>(() => new VexilClient("vxl-server-x", new ClientOptions { Offline = true, FlushInterval = TimeSpan.FromSeconds(-1) }));
            Assert.AreEqual(VexilErrorCode.InvalidOptions, e.Code);
        }

        [Test]
        public void TypedVariationsAndDetails()
        {
            using (var client = Bootstrapped(Paths.BoolFlag("checkout"), Flag("banner", "string", "hello"), Flag("limit", "number", 2.5),
                Flag("layout", "json", new Dictionary<string, object> { { "columns", 3 } })))
            using (var alice = Context.Builder("user", "alice").Set("plan", "pro").Build())
            {
                Assert.IsTrue(client.BoolVariation("checkout", alice, false));
                Assert.AreEqual("hello", client.StringVariation("banner", alice, "d"));
                Assert.AreEqual(2.5, client.NumberVariation("limit", alice, 1));
                Assert.AreEqual("{\"columns\":3}", Json.Write(client.JsonVariation("layout", alice, null)));
                var detail = client.BoolVariationDetail("checkout", alice, false);
                Assert.AreEqual("FALLTHROUGH", detail.Reason.Kind);
                Assert.AreEqual(1, detail.Variation);
                Assert.AreEqual("BOOTSTRAP", detail.Source);
                var wrong = client.StringVariationDetail("checkout", alice, "d");
                Assert.AreEqual("d", wrong.Value);
                Assert.AreEqual("WRONG_TYPE", wrong.Reason.ErrorKind);
                Assert.AreEqual("FLAG_NOT_FOUND", client.NumberVariationDetail("nope", alice, 7).Reason.ErrorKind);
                Assert.AreEqual("INVALID_CONTEXT", client.BoolVariationDetail("checkout", null, false).Reason.ErrorKind);
                Assert.AreEqual(4, client.AllFlags(alice).Count);
                client.Track("purchase", alice, 3.0);
                var e = Assert.Throws<VexilException>(() => client.Track("", alice));
                Assert.AreEqual(VexilErrorCode.InvalidArgument, e.Code);
                Assert.AreEqual(ClientStatus.Offline, client.Status);
                Assert.AreEqual("LOCAL", client.State()["mode"]);
                Assert.IsTrue(client.Flush(TimeSpan.FromSeconds(1)));
                client.Close();
                Assert.AreEqual(ClientStatus.Closed, client.Status);
                Assert.IsTrue(client.BoolVariation("checkout", alice, false), "a closed client answers from its last data");
                client.Dispose();
                Assert.IsFalse(client.BoolVariation("checkout", alice, false), "a disposed client answers the default");
                Assert.AreEqual("CLIENT_NOT_READY", client.BoolVariationDetail("checkout", alice, false).Reason.ErrorKind);
                Assert.AreEqual(ClientStatus.Closed, client.Status);
            }
        }

        /// <summary>
        /// The typed variations copy ASCII keys into a per-thread buffer and encode the others
        /// (longer keys, non-ASCII keys, which name no flag as flag keys are ASCII); misuse
        /// answers the default, never an exception.
        /// </summary>
        [Test]
        public void TypedVariationsForEveryKindOfKeyAndMisuse()
        {
            var longKey = new string('k', 200);
            using (var client = Bootstrapped(Paths.BoolFlag("checkout"), Paths.BoolFlag(longKey), Flag("banner", "string", "\u00e9t\u00e9"),
                Flag("limit", "number", 2.5)))
            {
                var alice = Context.Builder("user", "alice").Build();
                Assert.IsTrue(client.BoolVariation(longKey, alice, false), "key longer than the per-thread buffer");
                Assert.IsFalse(client.BoolVariation(longKey + "x", alice, false));
                Assert.AreEqual("\u00e9t\u00e9", client.StringVariation("banner", alice, "d"), "non-ASCII value");
                Assert.AreEqual("d\u00e9", client.StringVariation("nope", alice, "d\u00e9"), "non-ASCII default");
                Assert.IsTrue(client.BoolVariation("caf\u00e9", alice, true), "a non-ASCII key names no flag");
                Assert.IsFalse(client.BoolVariation("checkout\u00e9", alice, false), "nor does an ASCII key with more");
                Assert.IsFalse(client.BoolVariation("check\ud800out", alice, false), "a lone surrogate names no flag");
                Assert.AreEqual("FLAG_NOT_FOUND", client.BoolVariationDetail("caf\u00e9", alice, false).Reason.ErrorKind);
                Assert.IsFalse(client.BoolVariation("", alice, false));
                Assert.IsFalse(client.BoolVariation(null, alice, false));
                Assert.AreEqual(1.0, client.NumberVariation(null, alice, 1));
                Assert.AreEqual("d", client.StringVariation(null, alice, "d"));
                Assert.IsNull(client.StringVariation("banner", alice, null));
                Assert.IsFalse(client.BoolVariation("checkout", null, false));
                Assert.AreEqual(1.0, client.NumberVariation("limit", null, 1));
                Assert.AreEqual("d", client.StringVariation("banner", null, "d"));
                Assert.IsTrue(client.BoolVariation("checkout", alice, false));
                Assert.AreEqual(2.5, client.NumberVariation("limit", alice, 1));
                alice.Dispose();
                Assert.IsFalse(client.BoolVariation("checkout", alice, false), "a disposed context answers the default");
                Assert.AreEqual(1.0, client.NumberVariation("limit", alice, 1));
                Assert.AreEqual("d", client.StringVariation("banner", alice, "d"));
                alice.Dispose();
            }
        }

        [Test]
        public void ConcurrentUseAndDispose()
        {
            var client = Bootstrapped(Paths.BoolFlag("checkout"));
            using (var alice = Context.Builder("user", "alice").Build())
            {
                var threads = new List<Thread>();
                for (var i = 0; i < 4; i++)
                {
                    var t = new Thread(() =>
                    {
                        for (var n = 0; n < 2000; n++)
                        {
                            client.BoolVariation("checkout", alice, false);
                            client.StringVariationDetail("checkout", alice, "x");
                        }
                    });
                    t.Start();
                    threads.Add(t);
                }
                Thread.Sleep(5);
                client.Dispose();
                foreach (var t in threads) t.Join();
            }
        }

        /// <summary>
        /// A context disposed while threads evaluate with it: the disposal waits for the calls
        /// inside, and every call that starts afterwards answers the default.
        /// </summary>
        [Test]
        public void ConcurrentUseAndContextDispose()
        {
            using (var client = Bootstrapped(Paths.BoolFlag("checkout")))
            {
                var alice = Context.Builder("user", "alice").Build();
                var disposed = 0;
                var wrongAfterDispose = 0;
                var threads = new List<Thread>();
                for (var i = 0; i < 4; i++)
                {
                    var t = new Thread(() =>
                    {
                        for (var n = 0; n < 20000; n++)
                        {
                            var wasDisposed = Volatile.Read(ref disposed) == 1;
                            if (client.BoolVariation("checkout", alice, false) && wasDisposed) Interlocked.Increment(ref wrongAfterDispose);
                        }
                    });
                    t.Start();
                    threads.Add(t);
                }
                Thread.Sleep(5);
                alice.Dispose();
                Volatile.Write(ref disposed, 1);
                foreach (var t in threads) t.Join();
                Assert.AreEqual(0, wrongAfterDispose, "calls after Dispose answered from the freed context");
            }
        }

        /// <summary>10,000 clients created and disposed: resident memory stays flat.</summary>
        [Test]
        public void TenThousandClientsFlatMemory()
        {
            using (var alice = Context.Builder("user", "alice").Build())
            {
                Action<int> cycle = n =>
                {
                    for (var i = 0; i < n; i++)
                    {
                        using (var client = new VexilClient("vxl-server-memory", new ClientOptions { Offline = true }))
                            client.BoolVariation("checkout", alice, false);
                    }
                };
                cycle(1000);
                GC.Collect();
                GC.WaitForPendingFinalizers();
                var before = Rss();
                cycle(10000);
                GC.Collect();
                GC.WaitForPendingFinalizers();
                var after = Rss();
                Console.WriteLine("RSS before {0} KiB, after 10,000 clients {1} KiB", before, after);
                Assert.Less(after - before, 20 * 1024, "RSS grew by more than 20 MiB over 10,000 clients");
            }
        }

        static long Rss()
        {
            foreach (var line in File.ReadAllLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries)[1]);
            throw new InvalidOperationException("no VmRSS");
        }
    }

    [TestFixture]
    public class ServerTests
    {
        [Test]
        public void ARefusedKeyIsLoggedOnceAsAnError()
        {
            using (var server = new TestServer())
            {
                var logged = new List<KeyValuePair<VexilLogLevel, string>>();
                Action<VexilLogLevel, string> logger = (level, message) =>
                {
                    lock (logged) logged.Add(new KeyValuePair<VexilLogLevel, string>(level, message));
                };
                using (var client = new VexilClient("vxl-server-not-a-real-key", new ClientOptions { Endpoint = server.Endpoint, Logger = logger }))
                {
                    Assert.AreEqual(ClientStatus.Failed, client.WaitForInitialization(TimeSpan.FromSeconds(15)));
                }
                lock (logged)
                {
                    var refused = logged.FindAll(m => m.Value.Contains("refused the SDK key"));
                    Assert.AreEqual(1, refused.Count, string.Join("; ", logged));
                    Assert.AreEqual(VexilLogLevel.Error, refused[0].Key);
                    Assert.IsTrue(logged.TrueForAll(m => m.Key <= VexilLogLevel.Info), "info by default: " + string.Join("; ", logged));
                }

                // Without a logger, the trace source "Vexil" receives it.
                var listener = new Recorder();
                VexilClient.Trace.Listeners.Add(listener);
                try
                {
                    using (var client = new VexilClient("vxl-server-not-a-real-key", new ClientOptions { Endpoint = server.Endpoint }))
                    {
                        Assert.AreEqual(ClientStatus.Failed, client.WaitForInitialization(TimeSpan.FromSeconds(15)));
                    }
                    lock (listener.Lines) Assert.IsTrue(listener.Lines.Exists(l => l.Contains("refused the SDK key")), string.Join("; ", listener.Lines));
                }
                finally
                {
                    VexilClient.Trace.Listeners.Remove(listener);
                }
            }
        }

        /// <summary>Keeps what a trace source writes, one line per message.</summary>
        sealed class Recorder : TraceListener
        {
            public readonly List<string> Lines = new List<string>();
            public override void Write(string message) { lock (Lines) Lines.Add(message); }
            public override void WriteLine(string message) { lock (Lines) Lines.Add(message); }
        }

        [Test]
        public void AgainstARealServer()
        {
            using (var server = new TestServer())
            using (var alice = Context.Builder("user", "alice").Build())
            {
                server.ImportFlags(Paths.BoolFlag("checkout"));
                // Initial sync, then a change raised as an event.
                using (var client = new VexilClient(server.Key("server"), new ClientOptions { Endpoint = server.Endpoint, InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromMilliseconds(500) }))
                {
                    Assert.AreEqual(ClientStatus.Ready, client.WaitForInitialization(TimeSpan.FromSeconds(15)));
                    var detail = client.BoolVariationDetail("checkout", alice, false);
                    Assert.IsTrue(detail.Value);
                    Assert.AreEqual("NETWORK", detail.Source);
                    var changed = new ManualResetEventSlim();
                    client.FlagsChanged += (sender, change) =>
                    {
                        if (change.Version > detail.Version && ((IList<string>)change.FlagKeys).Contains("checkout")) changed.Set();
                    };
                    server.Cli("flags", "toggle", "checkout", "off");
                    Assert.IsTrue(changed.Wait(TimeSpan.FromSeconds(10)), "no change event");
                    Assert.IsFalse(client.BoolVariation("checkout", alice, true));
                }

                // Remote evaluation with a mobile key, and identify.
                var flag = Paths.BoolFlag("mobile-checkout");
                flag["client_side"] = true;
                flag["rules"] = new List<object> { new Dictionary<string, object> {
                    { "id", "bob" },
                    { "clauses", new List<object> { new Dictionary<string, object> { { "attribute", "key" }, { "op", "in" }, { "values", new List<object> { "bob" } } } } },
                    { "serve", new Dictionary<string, object> { { "variation", 0 } } } } };
                server.ImportFlags(flag, Paths.BoolFlag("server-only"));
                using (var client = new VexilClient(server.Key("mobile"), new ClientOptions { Endpoint = server.Endpoint, Context = alice }))
                using (var bob = Context.Builder("user", "bob").Build())
                {
                    Assert.AreEqual(ClientStatus.Ready, client.WaitForInitialization(TimeSpan.FromSeconds(15)));
                    Assert.IsTrue(client.BoolVariation("mobile-checkout", alice, false));
                    Assert.AreEqual("FLAG_NOT_FOUND", client.BoolVariationDetail("server-only", alice, false).Reason.ErrorKind);
                    Assert.IsTrue(client.Identify(bob, TimeSpan.FromSeconds(10)));
                    var d = client.BoolVariationDetail("mobile-checkout", bob, true);
                    Assert.IsFalse(d.Value);
                    Assert.AreEqual("RULE_MATCH", d.Reason.Kind);
                }

                // The Task forms against the server.
                using (var client = new VexilClient(server.Key("mobile"), new ClientOptions { Endpoint = server.Endpoint, Context = alice }))
                using (var bob = Context.Builder("user", "bob").Build())
                {
                    Assert.AreEqual(ClientStatus.Ready, client.WaitForInitializationAsync(TimeSpan.FromSeconds(15)).Result);
                    Assert.IsTrue(client.IdentifyAsync(bob, TimeSpan.FromSeconds(10)).Result);
                    client.Track("purchase", bob, 1);
                    Assert.IsTrue(client.FlushAsync(TimeSpan.FromSeconds(10)).Result);
                }

                // Track and flush, counted by the server.
                using (var client = new VexilClient(server.Key("server"), new ClientOptions { Endpoint = server.Endpoint, FlushInterval = TimeSpan.FromHours(1) }))
                {
                    Assert.AreEqual(ClientStatus.Ready, client.WaitForInitialization(TimeSpan.FromSeconds(15)));
                    const string series = "vexil_events_total{environment=\"default/production\",type=\"track\"}";
                    var before = server.Metric(series);
                    client.Track("purchase", alice, 1);
                    client.Track("purchase", alice, 2);
                    client.Track("purchase", alice);
                    Assert.IsTrue(client.Flush(TimeSpan.FromSeconds(10)));
                    Assert.AreEqual(3, server.Metric(series) - before);
                }
            }
        }
    }
}
