using System.Collections.Generic;
using System.IO;
using NUnit.Framework;
using Vexil;

namespace Vexil.Tests
{
    /// <summary>Every conformance vector through the public API: an offline client bootstrapped with each file's ruleset.</summary>
    [TestFixture]
    public class VectorTests
    {
        public static IEnumerable<string> Files()
        {
            foreach (var path in Directory.GetFiles(Path.Combine(Paths.Root, "conformance", "vectors"), "*.json"))
                yield return Path.GetFileName(path);
        }

        static ValueKind KindOf(Dictionary<string, object> c)
        {
            object type;
            if (c.TryGetValue("type", out type))
            {
                switch ((string)type)
                {
                    case "bool": return ValueKind.Bool;
                    case "string": return ValueKind.String;
                    case "number": return ValueKind.Number;
                    default: return ValueKind.Json;
                }
            }
            var def = c["default"];
            if (def is bool) return ValueKind.Bool;
            if (def is string) return ValueKind.String;
            if (def is double) return ValueKind.Number;
            return ValueKind.Json;
        }

        [TestCaseSource("Files")]
        public void VectorFile(string name)
        {
            var vectors = (Dictionary<string, object>)Json.Parse(File.ReadAllText(Path.Combine(Paths.Root, "conformance", "vectors", name)));
            object flags, segments;
            vectors.TryGetValue("flags", out flags);
            vectors.TryGetValue("segments", out segments);
            var dir = Paths.TempDir();
            var ruleset = Paths.WriteRuleset(dir, (List<object>)flags ?? new List<object>(), (List<object>)segments);
            var failures = new List<string>();
            using (var client = new VexilClient("vxl-server-conformance", new ClientOptions { Offline = true, Bootstrap = ruleset }))
            {
                foreach (Dictionary<string, object> c in (List<object>)vectors["cases"])
                {
                    var expect = (Dictionary<string, object>)c["expect"];
                    var detail = client.DetailForJsonContext((string)c["flag"], Json.Write(c["context"]), KindOf(c), Json.Write(c["default"]));
                    var caseName = (string)c["name"];
                    if (!Json.Same(detail.Value, expect["value"])) failures.Add(caseName + ": value " + Json.Write(detail.Value));
                    var variation = detail.Variation.HasValue ? (object)(double)detail.Variation.Value : null;
                    object expectedVariation;
                    expect.TryGetValue("variation", out expectedVariation);
                    if (!Json.Same(variation, expectedVariation)) failures.Add(caseName + ": variation " + Json.Write(variation));
                    if (!Json.Same(detail.Reason.Json, expect["reason"])) failures.Add(caseName + ": reason " + detail.Reason);
                    object inExperiment;
                    var expectedIn = expect.TryGetValue("in_experiment", out inExperiment) && (bool)inExperiment;
                    if (detail.InExperiment != expectedIn) failures.Add(caseName + ": in_experiment " + detail.InExperiment);
                }
            }
            Directory.Delete(dir, true);
            Assert.IsEmpty(failures, string.Join("; ", failures));
        }
    }
}
