using System;
using System.Collections.Generic;

namespace Vexil
{
    /// <summary>
    /// The level of a client's log message, most severe first: a refused SDK key is an error, a
    /// dropped event batch or an unreadable cache file a warning, status changes debug.
    /// </summary>
    public enum VexilLogLevel
    {
        /// <summary>Nothing is logged (as a <see cref="ClientOptions.LogLevel"/>).</summary>
        None = 0,
        /// <summary>A failure the application should know of (a refused SDK key).</summary>
        Error = 1,
        /// <summary>Something lost or ignored (a dropped event batch, an unreadable cache file).</summary>
        Warn = 2,
        /// <summary>Information.</summary>
        Info = 3,
        /// <summary>What the client is doing (status changes, reconnections).</summary>
        Debug = 4,
        /// <summary>The most detailed.</summary>
        Trace = 5,
    }

    /// <summary>Settings of a <see cref="VexilClient"/>; every one has a default fit for production.</summary>
    public sealed class ClientOptions
    {
        /// <summary>The server's gRPC endpoint (default http://127.0.0.1:50051).</summary>
        public string Endpoint { get; set; }
        /// <summary>Where the last good data is persisted and read at start.</summary>
        public string CacheDir { get; set; }
        /// <summary>A ruleset JSON file (the export format) served until better data arrives.</summary>
        public string Bootstrap { get; set; }
        /// <summary>No network at all: cache, bootstrap or defaults.</summary>
        public bool Offline { get; set; }
        /// <summary>The first context of a client or mobile key (remote evaluation).</summary>
        public Context Context { get; set; }
        /// <summary>Data older than this is reported stale (default 7 days).</summary>
        public TimeSpan? MaxCacheAge { get; set; }
        /// <summary>Timeout of a connection attempt (default 5 s).</summary>
        public TimeSpan? ConnectTimeout { get; set; }
        /// <summary>A stream silent for this long is reconnected (default 60 s).</summary>
        public TimeSpan? StreamTimeout { get; set; }
        /// <summary>First reconnection delay, doubling up to <see cref="MaxBackoff"/> (default 1 s).</summary>
        public TimeSpan? InitialBackoff { get; set; }
        /// <summary>Longest reconnection delay (default 30 s).</summary>
        public TimeSpan? MaxBackoff { get; set; }
        /// <summary>Send exposures, track events and summaries (default true).</summary>
        public bool EventsEnabled { get; set; } = true;
        /// <summary>How often pending events are sent (default 5 s).</summary>
        public TimeSpan? FlushInterval { get; set; }
        /// <summary>Events held at most while waiting to be sent (default 10,000).</summary>
        public int? EventCapacity { get; set; }
        /// <summary>
        /// Attributes that events never carry, on every context (private attributes): names, or
        /// JSON Pointers into the attributes ("/address/street"). Their values are removed before
        /// an event is queued and their names listed in the context's redacted_attributes;
        /// evaluation still reads them.
        /// </summary>
        public IList<string> PrivateAttributes { get; set; }
        /// <summary>Every attribute private: events carry kinds and keys only (default false).</summary>
        public bool AllAttributesPrivate { get; set; }
        /// <summary>
        /// Where the client's messages go (default: the trace source <see cref="VexilClient.Trace"/>,
        /// named "Vexil"). Called on the client's threads, one message at a time: it should
        /// return quickly; an exception it throws is ignored.
        /// </summary>
        public Action<VexilLogLevel, string> Logger { get; set; }
        /// <summary>The most detailed messages passed to <see cref="Logger"/> (default <see cref="VexilLogLevel.Info"/>).</summary>
        public VexilLogLevel LogLevel { get; set; } = VexilLogLevel.Info;
        /// <summary>
        /// Tests: serve this in-memory data instead of the server's. The client evaluates
        /// locally whatever the key's kind, is ready at once, uses no network and writes no cache.
        /// </summary>
        public TestData TestData { get; set; }
        /// <summary>Name of the application's wrapper, sent with syncs and events.</summary>
        public string SdkName { get; set; }
        /// <summary>Version of the application's wrapper.</summary>
        public string SdkVersion { get; set; }

        internal string ToJson()
        {
            var o = new Dictionary<string, object>();
            if (Endpoint != null) o["endpoint"] = Endpoint;
            if (CacheDir != null) o["cache_dir"] = CacheDir;
            if (Bootstrap != null) o["bootstrap"] = Bootstrap;
            o["offline"] = Offline;
            if (Context != null) o["context"] = new RawJson(Context.Json);
            Millis(o, "max_cache_age_ms", MaxCacheAge);
            Millis(o, "connect_timeout_ms", ConnectTimeout);
            Millis(o, "stream_timeout_ms", StreamTimeout);
            Millis(o, "initial_backoff_ms", InitialBackoff);
            Millis(o, "max_backoff_ms", MaxBackoff);
            if (SdkName != null) o["sdk_name"] = SdkName;
            if (SdkVersion != null) o["sdk_version"] = SdkVersion;
            var events = new Dictionary<string, object> { { "enabled", EventsEnabled } };
            Millis(events, "flush_interval_ms", FlushInterval);
            if (EventCapacity.HasValue) events["capacity"] = (long)EventCapacity.Value;
            if (PrivateAttributes != null) events["private_attributes"] = new List<string>(PrivateAttributes);
            events["all_attributes_private"] = AllAttributesPrivate;
            o["events"] = events;
            return Json.Write(o);
        }

        static void Millis(Dictionary<string, object> o, string field, TimeSpan? value)
        {
            if (!value.HasValue) return;
            if (value.Value < TimeSpan.Zero) throw new VexilException(VexilErrorCode.InvalidOptions, field + ": must not be negative");
            o[field] = (long)value.Value.TotalMilliseconds;
        }
    }

    /// <summary>Where a client stands.</summary>
    public enum ClientStatus
    {
        /// <summary>Waiting for the first data (cached or bootstrap data is served).</summary>
        Initializing = 0,
        /// <summary>Connected, with current data.</summary>
        Ready = 1,
        /// <summary>Connection lost or data too old: the last good data is served.</summary>
        Stale = 2,
        /// <summary>Offline mode.</summary>
        Offline = 3,
        /// <summary>The server refused the SDK key; no retry.</summary>
        Failed = 4,
        /// <summary>Closed.</summary>
        Closed = 5,
    }
}
