// The .NET SDK's testee: answers the commands of conformance/PROTOCOL.md on stdin/stdout
// through the public API of the Vexil library only.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Vexil;

namespace Vexil.Testee
{
    static class Program
    {
        static VexilClient client;
        static BlockingCollection<FlagChangeEventArgs> changes;

        static long Millis(Dictionary<string, object> c, string field, long def) =>
            c.TryGetValue(field, out var v) && v is double d ? (long)d : def;

        static string Str(Dictionary<string, object> c, string field) =>
            c.TryGetValue(field, out var v) ? v as string : null;

        static Context ContextOf(Dictionary<string, object> c)
        {
            c.TryGetValue("context", out var v);
            return Context.Parse(Json.Write(v));
        }

        static ValueKind KindOf(string type, object def)
        {
            switch (type)
            {
                case "bool": return ValueKind.Bool;
                case "string": return ValueKind.String;
                case "number": return ValueKind.Number;
                case "json": return ValueKind.Json;
                case null: break;
                default: throw new ArgumentException("type: unknown " + type);
            }
            if (def is bool) return ValueKind.Bool;
            if (def is string) return ValueKind.String;
            if (def is double) return ValueKind.Number;
            return ValueKind.Json;
        }

        static string StatusName(ClientStatus s) => s.ToString().ToUpperInvariant();

        static void CloseClient()
        {
            client?.Dispose();
            client = null;
        }

        static Dictionary<string, object> Handle(Dictionary<string, object> c)
        {
            var cmd = Str(c, "cmd");
            if (cmd != "create" && cmd != "close" && client == null) throw new InvalidOperationException("no client: send `create` first");
            var answer = new Dictionary<string, object>();
            switch (cmd)
            {
                case "create":
                {
                    CloseClient();
                    var key = Str(c, "sdk_key") ?? throw new ArgumentException("sdk_key: required");
                    var options = new ClientOptions
                    {
                        Endpoint = Str(c, "endpoint"),
                        CacheDir = Str(c, "cache_dir"),
                        Bootstrap = Str(c, "bootstrap"),
                        Offline = c.TryGetValue("offline", out var offline) && offline is bool b && b,
                        InitialBackoff = TimeSpan.FromMilliseconds(100),
                        MaxBackoff = TimeSpan.FromMilliseconds(500),
                        StreamTimeout = TimeSpan.FromSeconds(5),
                        FlushInterval = TimeSpan.FromMilliseconds(Millis(c, "flush_interval_ms", 5000)),
                        SdkName = "vexil-dotnet-testee",
                        SdkVersion = "0.1.0",
                        AllAttributesPrivate = c.TryGetValue("all_attributes_private", out var all) && all is bool allPrivate && allPrivate,
                    };
                    if (c.TryGetValue("private_attributes", out var references) && references is List<object> list)
                    {
                        options.PrivateAttributes = list.ConvertAll(reference => (string)reference);
                    }
                    Context first = null;
                    if (c.TryGetValue("context", out var ctx) && ctx != null)
                    {
                        first = Context.Parse(Json.Write(ctx));
                        options.Context = first;
                    }
                    try
                    {
                        client = new VexilClient(key, options);
                    }
                    finally
                    {
                        first?.Dispose();
                    }
                    var queue = new BlockingCollection<FlagChangeEventArgs>();
                    changes = queue;
                    client.FlagsChanged += (sender, change) => queue.Add(change);
                    return answer;
                }
                case "wait_init":
                    answer["status"] = StatusName(client.WaitForInitialization(TimeSpan.FromMilliseconds(Millis(c, "timeout_ms", 5000))));
                    return answer;
                case "evaluate":
                {
                    var flag = Str(c, "flag") ?? throw new ArgumentException("flag: required");
                    c.TryGetValue("default", out var def);
                    c.TryGetValue("context", out var ctx);
                    var d = client.DetailForJsonContext(flag, Json.Write(ctx), KindOf(Str(c, "type"), def), Json.Write(def));
                    answer["value"] = d.Value;
                    answer["variation"] = d.Variation.HasValue ? (object)(long)d.Variation.Value : null;
                    answer["reason"] = d.Reason.Json;
                    answer["in_experiment"] = d.InExperiment;
                    answer["source"] = d.Source;
                    answer["version"] = d.Version;
                    return answer;
                }
                case "evaluate_all":
                {
                    var flags = new Dictionary<string, object>();
                    using (var ctx = ContextOf(c))
                    {
                        foreach (var pair in client.AllFlags(ctx))
                        {
                            var d = pair.Value;
                            flags[pair.Key] = new Dictionary<string, object>
                            {
                                { "value", d.Value }, { "variation", d.Variation.HasValue ? (object)(long)d.Variation.Value : null },
                                { "reason", d.Reason.Json }, { "in_experiment", d.InExperiment },
                            };
                        }
                    }
                    answer["flags"] = flags;
                    return answer;
                }
                case "identify":
                    using (var ctx = ContextOf(c))
                        answer["arrived"] = client.Identify(ctx, TimeSpan.FromMilliseconds(Millis(c, "timeout_ms", 5000)));
                    return answer;
                case "track":
                {
                    var name = Str(c, "name") ?? throw new ArgumentException("name: required");
                    double? value = c.TryGetValue("value", out var v) && v is double d ? (double?)d : null;
                    using (var ctx = ContextOf(c)) client.Track(name, ctx, value);
                    return answer;
                }
                case "flush":
                    answer["delivered"] = client.Flush(TimeSpan.FromMilliseconds(Millis(c, "timeout_ms", 5000)));
                    return answer;
                case "wait_change":
                {
                    var wanted = Str(c, "flag");
                    var deadline = DateTime.UtcNow.AddMilliseconds(Millis(c, "timeout_ms", 5000));
                    while (true)
                    {
                        var left = deadline - DateTime.UtcNow;
                        if (left < TimeSpan.Zero) left = TimeSpan.Zero;
                        if (!changes.TryTake(out var change, left))
                        {
                            answer["changed"] = false;
                            answer["flag_keys"] = new List<object>();
                            return answer;
                        }
                        if (wanted == null || ((IList<string>)change.FlagKeys).Contains(wanted))
                        {
                            answer["changed"] = true;
                            answer["flag_keys"] = change.FlagKeys;
                            return answer;
                        }
                    }
                }
                case "status":
                {
                    var state = client.State();
                    var events = (Dictionary<string, object>)state["events"];
                    answer["status"] = state["status"];
                    answer["source"] = state["source"];
                    answer["version"] = state["version"];
                    answer["events"] = new Dictionary<string, object> { { "dropped", events["dropped"] }, { "sent", events["sent"] }, { "queued", events["queued"] } };
                    return answer;
                }
                case "close":
                    CloseClient();
                    return answer;
                default:
                    throw new ArgumentException("cmd: unknown command " + cmd);
            }
        }

        static void Main()
        {
            var input = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false));
            var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true };
            string line;
            while ((line = input.ReadLine()) != null)
            {
                if (line.Trim().Length == 0) continue;
                Dictionary<string, object> answer;
                object id = null;
                try
                {
                    var command = (Dictionary<string, object>)Json.Parse(line);
                    command.TryGetValue("id", out id);
                    answer = Handle(command);
                    answer["ok"] = true;
                }
                catch (Exception e) when (e is VexilException || e is ArgumentException || e is InvalidOperationException || e is FormatException || e is InvalidCastException)
                {
                    answer = new Dictionary<string, object> { { "ok", false }, { "error", e.Message } };
                }
                answer["id"] = id;
                output.WriteLine(Json.Write(answer));
            }
            CloseClient();
        }
    }
}
