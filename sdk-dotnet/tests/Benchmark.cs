using System;
using System.Diagnostics;
using Vexil;

namespace Vexil.Tests
{
    /// <summary>
    /// A Stopwatch benchmark of BoolVariation with a reused context, and the same evaluation
    /// timed inside the native library in the same run: prints both and their ratio.
    /// </summary>
    static class Benchmark
    {
        static void Main(string[] args)
        {
            var iterations = args.Length > 0 ? long.Parse(args[0]) : 2_000_000L;
            var path = Paths.WriteRuleset(Paths.TempDir(), new object[] { Paths.BoolFlag("checkout") });
            using (var client = new VexilClient("vxl-server-bench", new ClientOptions { Offline = true, Bootstrap = path }))
            using (var alice = Context.Builder("user", "alice").Build())
            {
                if (!client.BoolVariation("checkout", alice, false)) throw new InvalidOperationException("flag not served");
                for (var i = 0; i < 200_000; i++) client.BoolVariation("checkout", alice, false); // JIT and caches
                var watch = Stopwatch.StartNew();
                for (long i = 0; i < iterations; i++) client.BoolVariation("checkout", alice, false);
                watch.Stop();
                var dotnetNs = watch.Elapsed.TotalMilliseconds * 1e6 / iterations;
                var rust = client.BenchmarkNativeBoolVariation("checkout", alice, (ulong)iterations);
                var rustNs = rust.TotalMilliseconds * 1e6 / iterations;
                Console.WriteLine("BoolVariation: .NET {0:F1} ns/op, Rust {1:F1} ns/op, ratio {2:F2}x ({3} iterations)", dotnetNs, rustNs, dotnetNs / rustNs, iterations);
            }
        }
    }
}
