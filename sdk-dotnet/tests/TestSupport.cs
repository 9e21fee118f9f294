using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using Vexil;

namespace Vexil.Tests
{
    static class Paths
    {
        /// <summary>The repository root: VEXIL_REPO, else found upwards from the test assembly.</summary>
        public static string Root
        {
            get
            {
                var env = Environment.GetEnvironmentVariable("VEXIL_REPO");
                if (!string.IsNullOrEmpty(env)) return env;
                var dir = new DirectoryInfo(AppDomain.CurrentDomain.BaseDirectory);
                while (dir != null && !File.Exists(Path.Combine(dir.FullName, "conformance", "SCHEMA.md"))) dir = dir.Parent;
                if (dir == null) throw new InvalidOperationException("set VEXIL_REPO to the repository root");
                return dir.FullName;
            }
        }

        public static string Target =>
            Environment.GetEnvironmentVariable("CARGO_TARGET_DIR") ?? Path.Combine(Root, "target");

        public static string TempDir()
        {
            var dir = Path.Combine(Path.GetTempPath(), "vexil-dotnet-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            return dir;
        }

        public static Dictionary<string, object> BoolFlag(string key) => new Dictionary<string, object>
        {
            { "key", key }, { "kind", "bool" }, { "variations", new List<object> { false, true } }, { "on", true },
            { "off_variation", 0 }, { "fallthrough", new Dictionary<string, object> { { "variation", 1 } } },
        };

        public static string WriteRuleset(string dir, IEnumerable<object> flags, IEnumerable<object> segments = null)
        {
            var path = Path.Combine(dir, "ruleset-" + Guid.NewGuid().ToString("N") + ".json");
            File.WriteAllText(path, Json.Write(new Dictionary<string, object>
            {
                { "flags", new List<object>(flags) }, { "segments", new List<object>(segments ?? new object[0]) },
            }));
            return path;
        }
    }

    /// <summary>A vexil-server process on free ports with its own SQLite data directory.</summary>
    sealed class TestServer : IDisposable
    {
        readonly Process process;
        readonly string dataDir;
        public readonly int Port;
        public readonly int HttpPort;
        public readonly string Token;
        public readonly Dictionary<string, object> Keys;

        public string Endpoint => "http://127.0.0.1:" + Port;

        static int FreePort()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return port;
        }

        static string Binary(string name)
        {
            var path = Path.Combine(Paths.Target, "debug", name);
            if (!File.Exists(path)) throw new InvalidOperationException(name + " not found at " + path + ": cargo build -p vexil-server -p vexil-cli");
            return path;
        }

        public TestServer()
        {
            dataDir = Path.Combine(Paths.TempDir(), "server-data");
            Port = FreePort();
            HttpPort = FreePort();
            process = Process.Start(new ProcessStartInfo(Binary("vexil-server"),
                "--listen 127.0.0.1:" + Port + " --http-listen 127.0.0.1:" + HttpPort + " --data-dir " + dataDir +
                " --heartbeat-interval 0.5 --version-check-interval 0.5")
            { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true });
            process.OutputDataReceived += (s, e) => { };
            process.ErrorDataReceived += (s, e) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (true)
            {
                try
                {
                    using (var client = new WebClient()) client.DownloadString("http://127.0.0.1:" + HttpPort + "/readyz");
                    break;
                }
                catch (WebException)
                {
                    if (DateTime.UtcNow > deadline) throw new InvalidOperationException("vexil-server did not become ready");
                    Thread.Sleep(50);
                }
            }
            var credentials = (Dictionary<string, object>)Json.Parse(File.ReadAllText(Path.Combine(dataDir, "credentials.json")));
            Token = (string)((Dictionary<string, object>)credentials["admin_token"])["token"];
            Keys = (Dictionary<string, object>)((Dictionary<string, object>)credentials["sdk_keys"])["production"];
        }

        public string Key(string kind) => (string)Keys[kind];

        public void Cli(params string[] args)
        {
            var info = new ProcessStartInfo(Binary("vexil"), string.Join(" ", args)) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            info.EnvironmentVariables["VEXIL_SERVER"] = Endpoint;
            info.EnvironmentVariables["VEXIL_TOKEN"] = Token;
            info.EnvironmentVariables["VEXIL_ENVIRONMENT"] = "production";
            using (var cli = Process.Start(info))
            {
                var error = cli.StandardError.ReadToEnd();
                cli.StandardOutput.ReadToEnd();
                cli.WaitForExit();
                if (cli.ExitCode != 0) throw new InvalidOperationException("vexil " + string.Join(" ", args) + ": " + error);
            }
        }

        public void ImportFlags(params object[] flags)
        {
            Cli("import", Paths.WriteRuleset(Paths.TempDir(), flags));
        }

        public double Metric(string series)
        {
            using (var client = new WebClient())
            {
                foreach (var line in client.DownloadString("http://127.0.0.1:" + HttpPort + "/metrics").Split('\n'))
                {
                    if (line.StartsWith(series + " ", StringComparison.Ordinal))
                        return double.Parse(line.Substring(series.Length + 1), System.Globalization.CultureInfo.InvariantCulture);
                }
            }
            return 0;
        }

        public void Dispose()
        {
            try { process.Kill(); } catch (InvalidOperationException) { }
            process.WaitForExit();
            process.Dispose();
        }
    }
}
