using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using Vexil;

namespace Vexil.Tests
{
    /// <summary>
    /// A Stopwatch benchmark of BoolVariation with a reused context, and the same evaluation
    /// timed inside the native library in the same run. The two alternate in rounds, so that
    /// both see the same machine load, and the medians are printed with their ratio. On Linux
    /// the thread's CPU time is printed too: unlike wall time, it does not count the time
    /// other processes ran on a busy machine.
    /// </summary>
    static class Benchmark
    {
        static void Main(string[] args)
        {
            var iterations = args.Length > 0 ? long.Parse(args[0]) : 2000000L;
            var rounds = args.Length > 1 ? int.Parse(args[1]) : 10;
            var perRound = Math.Max(1, iterations / rounds);
            var path = Paths.WriteRuleset(Paths.TempDir(), new object[] { Paths.BoolFlag("checkout") });
            using (var client = new VexilClient("vxl-server-bench", new ClientOptions { Offline = true, Bootstrap = path }))
            using (var alice = Context.Builder("user", "alice").Build())
            {
                if (!client.BoolVariation("checkout", alice, false)) throw new InvalidOperationException("flag not served");
                for (var i = 0; i < 200000; i++) client.BoolVariation("checkout", alice, false); // JIT and caches
                var dotnetWall = new List<double>();
                var dotnetCpu = new List<double>();
                var rustWall = new List<double>();
                var rustCpu = new List<double>();
                for (var round = 0; round < rounds; round++)
                {
                    var cpu = ThreadCpu.Nanoseconds();
                    var watch = Stopwatch.StartNew();
                    for (long i = 0; i < perRound; i++) client.BoolVariation("checkout", alice, false);
                    watch.Stop();
                    dotnetCpu.Add((ThreadCpu.Nanoseconds() - cpu) / (double)perRound);
                    dotnetWall.Add(watch.Elapsed.TotalMilliseconds * 1e6 / perRound);

                    cpu = ThreadCpu.Nanoseconds();
                    var rust = client.BenchmarkNativeBoolVariation("checkout", alice, (ulong)perRound);
                    rustCpu.Add((ThreadCpu.Nanoseconds() - cpu) / (double)perRound);
                    rustWall.Add(rust.TotalMilliseconds * 1e6 / perRound);
                }
                double dotnetNs = Median(dotnetWall), rustNs = Median(rustWall);
                Console.WriteLine("BoolVariation: .NET {0:F1} ns/op, Rust {1:F1} ns/op, ratio {2:F2}x (wall, median of {3} rounds of {4} calls; fastest round .NET {5:F1}, Rust {6:F1})",
                    dotnetNs, rustNs, dotnetNs / rustNs, rounds, perRound, Min(dotnetWall), Min(rustWall));
                if (ThreadCpu.Available)
                {
                    double dotnetCpuNs = Median(dotnetCpu), rustCpuNs = Median(rustCpu);
                    Console.WriteLine("BoolVariation: .NET {0:F1} ns/op, Rust {1:F1} ns/op, ratio {2:F2}x (thread CPU time, median)",
                        dotnetCpuNs, rustCpuNs, dotnetCpuNs / rustCpuNs);
                }
            }
        }

        static double Median(List<double> values)
        {
            var sorted = new List<double>(values);
            sorted.Sort();
            var middle = sorted.Count / 2;
            return sorted.Count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
        }

        static double Min(List<double> values)
        {
            var min = double.MaxValue;
            foreach (var v in values) min = Math.Min(min, v);
            return min;
        }
    }

    /// <summary>The calling thread's CPU time (Linux CLOCK_THREAD_CPUTIME_ID); unavailable elsewhere.</summary>
    static unsafe class ThreadCpu
    {
        const int ClockThreadCpuTimeId = 3;

        [DllImport("libc", EntryPoint = "clock_gettime")]
        static extern int ClockGetTime(int clock, long* timespec);

        public static readonly bool Available = Probe();

        static bool Probe()
        {
            // Linux on 64 bits: the clock's number and a timespec of two longs.
            if (IntPtr.Size != 8 || !File.Exists("/proc/self/stat")) return false;
            try
            {
                long* timespec = stackalloc long[2];
                return ClockGetTime(ClockThreadCpuTimeId, timespec) == 0;
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                return false;
            }
        }

        public static long Nanoseconds()
        {
            if (!Available) return 0;
            long* timespec = stackalloc long[2];
            ClockGetTime(ClockThreadCpuTimeId, timespec);
            return timespec[0] * 1000000000L + timespec[1];
        }
    }
}
