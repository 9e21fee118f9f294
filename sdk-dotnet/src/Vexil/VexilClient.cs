// TraceSource's methods are [Conditional("TRACE")]: defined here, so that the default logger
// works whatever the build defines.
#define TRACE
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Vexil
{
    /// <summary>
    /// Evaluates flags for one SDK key, from data the native core keeps current in the
    /// background. Thread-safe. <see cref="Dispose"/> releases it (flushing events first).
    /// </summary>
    public sealed unsafe class VexilClient : IDisposable
#if !VEXIL_NO_ASYNC_DISPOSABLE
        , IAsyncDisposable
#endif
    {
        readonly ClientHandle handle;
        readonly object changeLock = new object();
        EventHandler<FlagChangeEventArgs> flagsChanged;
        Native.ChangeCallback callback; // kept alive while registered
        ulong listenerId;
        BlockingCollection<FlagChangeEventArgs> pending;
        Thread dispatcher;

        /// <summary>
        /// Creates a client and starts its background work at once; never waits for the
        /// network (see <see cref="WaitForInitialization"/>). Throws a
        /// <see cref="VexilException"/> for an invalid key, endpoint, option or context.
        /// </summary>
        public VexilClient(string sdkKey, ClientOptions options = null)
        {
            if (sdkKey == null) throw new VexilException(VexilErrorCode.NullArgument, "sdkKey: must not be null");
            options = options ?? new ClientOptions();
            var key = Native.Utf8(sdkKey);
            var json = Native.Utf8(options.ToJson());
            var log = LogCallbackOf(options);
            IntPtr ptr, message;
            int code;
            fixed (byte* k = key)
            fixed (byte* o = json)
            {
                code = options.TestData != null
                    ? Native.vexil_client_new_with_test_data(k, (UIntPtr)key.Length, o, (UIntPtr)json.Length,
                        options.TestData.Handle, out ptr, out message)
                    : Native.vexil_client_new_with_log(k, (UIntPtr)key.Length, o, (UIntPtr)json.Length,
                        log, log == null ? 0 : (int)options.LogLevel, IntPtr.Zero, out ptr, out message);
            }
            Native.Check(code, message);
            handle = new ClientHandle(ptr, log);
        }

        /// <summary>The trace source the client logs to when <see cref="ClientOptions.Logger"/> is not set.</summary>
        public static readonly TraceSource Trace = new TraceSource("Vexil", SourceLevels.Warning);

        /// <summary>
        /// The native log callback handing the client's messages to the options' logger (or to
        /// <see cref="Trace"/>); null when the options' level is <see cref="VexilLogLevel.None"/>.
        /// </summary>
        static Native.LogCallback LogCallbackOf(ClientOptions options)
        {
            if (options.LogLevel == VexilLogLevel.None) return null;
            var logger = options.Logger ?? ToTraceSource;
            return (userData, level, message, length) =>
            {
                try
                {
                    logger((VexilLogLevel)level, Encoding.UTF8.GetString((byte*)message, checked((int)length)));
                }
                catch (Exception)
                {
                    // A logger that throws must not unwind into the native thread.
                }
            };
        }

        static void ToTraceSource(VexilLogLevel level, string message)
        {
            var type = level == VexilLogLevel.Error ? TraceEventType.Error
                : level == VexilLogLevel.Warn ? TraceEventType.Warning
                : level == VexilLogLevel.Info ? TraceEventType.Information
                : TraceEventType.Verbose;
            Trace.TraceEvent(type, 0, message);
        }

        /// <summary>Waits until the first data arrives, the key is refused, or the timeout passes; returns the status then.</summary>
        public ClientStatus WaitForInitialization(TimeSpan timeout)
        {
            Native.Check(Native.vexil_client_wait_for_initialization(handle, Millis(timeout), out var status, out var message), message);
            return (ClientStatus)status;
        }

        /// <summary>The status now.</summary>
        public ClientStatus Status
        {
            get
            {
                if (handle.IsClosed) return ClientStatus.Closed;
                Native.Check(Native.vexil_client_status(handle, out var status, out var message), message);
                return (ClientStatus)status;
            }
        }

        /// <summary>
        /// Everything about where the client stands, as the JSON object of the C ABI:
        /// status, reason, mode, source, version and event counters.
        /// </summary>
        public Dictionary<string, object> State()
        {
            Native.Check(Native.vexil_client_state(handle, out var json, out var len, out var message), message);
            return (Dictionary<string, object>)Json.Parse(Native.TakeString(json, len));
        }

        // The typed variations are the hot path: the key is copied into this thread's buffer
        // (ASCII) or encoded (anything else), both handles are entered through their gates, and one
        // blittable native call answers. No allocation, no exception: misuse answers the
        // default, as the native call does for a key that is not UTF-8.

        /// <summary>A bool flag's value for the context, or the default (unknown flag, wrong type, no data, disposed context or client).</summary>
        public bool BoolVariation(string flagKey, Context context, bool defaultValue)
        {
            if (flagKey == null || context == null) return defaultValue;
            var buffer = Native.KeyBuffer;
            fixed (byte* ascii = buffer)
            {
                var length = Native.CopyAscii(flagKey, ascii, buffer.Length);
                if (length >= 0) return BoolVariationOf(ascii, length, context, defaultValue);
            }
            var encoded = Native.Utf8(flagKey);
            fixed (byte* key = encoded) return BoolVariationOf(key, encoded.Length, context, defaultValue);
        }

        bool BoolVariationOf(byte* key, int keyLength, Context context, bool defaultValue)
        {
            if (!Enter(context, out var client, out var ctx)) return defaultValue;
            try
            {
                byte value;
                var code = Native.vexil_bool_variation(client, key, (UIntPtr)keyLength, ctx, defaultValue ? (byte)1 : (byte)0, &value, IntPtr.Zero);
                return code == 0 ? value != 0 : defaultValue;
            }
            finally
            {
                Leave(context);
            }
        }

        /// <summary>A number flag's value; see <see cref="BoolVariation"/>.</summary>
        public double NumberVariation(string flagKey, Context context, double defaultValue)
        {
            if (flagKey == null || context == null) return defaultValue;
            var buffer = Native.KeyBuffer;
            fixed (byte* ascii = buffer)
            {
                var length = Native.CopyAscii(flagKey, ascii, buffer.Length);
                if (length >= 0) return NumberVariationOf(ascii, length, context, defaultValue);
            }
            var encoded = Native.Utf8(flagKey);
            fixed (byte* key = encoded) return NumberVariationOf(key, encoded.Length, context, defaultValue);
        }

        double NumberVariationOf(byte* key, int keyLength, Context context, double defaultValue)
        {
            if (!Enter(context, out var client, out var ctx)) return defaultValue;
            try
            {
                double value;
                var code = Native.vexil_number_variation(client, key, (UIntPtr)keyLength, ctx, defaultValue, &value, IntPtr.Zero);
                return code == 0 ? value : defaultValue;
            }
            finally
            {
                Leave(context);
            }
        }

        /// <summary>A string flag's value; see <see cref="BoolVariation"/>.</summary>
        public string StringVariation(string flagKey, Context context, string defaultValue)
        {
            if (flagKey == null || context == null || defaultValue == null) return defaultValue;
            var buffer = Native.KeyBuffer;
            fixed (byte* ascii = buffer)
            {
                var length = Native.CopyAscii(flagKey, ascii, buffer.Length);
                if (length >= 0) return StringVariationOf(ascii, length, context, defaultValue);
            }
            var encoded = Native.Utf8(flagKey);
            fixed (byte* key = encoded) return StringVariationOf(key, encoded.Length, context, defaultValue);
        }

        string StringVariationOf(byte* key, int keyLength, Context context, string defaultValue)
        {
            var def = Native.Utf8(defaultValue);
            if (!Enter(context, out var client, out var ctx)) return defaultValue;
            try
            {
                IntPtr value;
                UIntPtr valueLength;
                int code;
                fixed (byte* d = def)
                {
                    code = Native.vexil_string_variation(client, key, (UIntPtr)keyLength, ctx, d, (UIntPtr)def.Length, &value, &valueLength, IntPtr.Zero);
                }
                return code == 0 ? Native.TakeString(value, valueLength) : defaultValue;
            }
            finally
            {
                Leave(context);
            }
        }

        /// <summary>
        /// Enters the client's and the context's gates and gives their native pointers; false
        /// (and nothing entered) when either is disposed. Every true is followed by <see cref="Leave"/>.
        /// </summary>
        bool Enter(Context context, out IntPtr client, out IntPtr ctx)
        {
            ctx = IntPtr.Zero;
            client = handle.Enter();
            if (client == IntPtr.Zero) return false;
            ctx = context.Handle.Enter();
            if (ctx != IntPtr.Zero) return true;
            handle.Leave();
            return false;
        }

        void Leave(Context context)
        {
            context.Handle.Leave();
            handle.Leave();
        }

        /// <summary>Any flag's value as parsed JSON (see <see cref="Json"/>), or the default.</summary>
        public object JsonVariation(string flagKey, Context context, object defaultValue) =>
            JsonVariationDetail(flagKey, context, defaultValue).Value;

        /// <summary><see cref="BoolVariation"/> with the reason, variation and source.</summary>
        public Detail<bool> BoolVariationDetail(string flagKey, Context context, bool defaultValue) =>
            TypedDetail(flagKey, context, ValueKind.Bool, defaultValue, v => v is bool b ? b : defaultValue);

        /// <summary><see cref="NumberVariation"/> with the reason, variation and source.</summary>
        public Detail<double> NumberVariationDetail(string flagKey, Context context, double defaultValue) =>
            TypedDetail(flagKey, context, ValueKind.Number, defaultValue, v => v is double d ? d : defaultValue);

        /// <summary><see cref="StringVariation"/> with the reason, variation and source.</summary>
        public Detail<string> StringVariationDetail(string flagKey, Context context, string defaultValue) =>
            TypedDetail(flagKey, context, ValueKind.String, defaultValue, v => v is string s ? s : defaultValue);

        /// <summary><see cref="JsonVariation"/> with the reason, variation and source.</summary>
        public Detail<object> JsonVariationDetail(string flagKey, Context context, object defaultValue) =>
            TypedDetail(flagKey, context, ValueKind.Json, defaultValue, v => v);

        Detail<T> TypedDetail<T>(string flagKey, Context context, ValueKind kind, T defaultValue, Func<object, T> convert)
        {
            if (flagKey == null) return Detail<T>.Error(defaultValue, Native.ErrorKindOf(Native.Unevaluated.FlagKeyNotText));
            if (context == null) return Detail<T>.Error(defaultValue, Native.ErrorKindOf(Native.Unevaluated.ContextMissing));
            string defaultJson;
            try
            {
                defaultJson = Json.Write(defaultValue);
            }
            catch (ArgumentException)
            {
                return Detail<T>.Error(defaultValue, Native.ErrorKindOf(Native.Unevaluated.DefaultNotJson));
            }
            var key = Native.Utf8(flagKey);
            var def = Native.Utf8(defaultJson);
            string json;
            try
            {
                fixed (byte* k = key)
                fixed (byte* d = def)
                {
                    var code = Native.vexil_variation_detail(handle, k, (UIntPtr)key.Length, context.Handle, (int)kind, d, (UIntPtr)def.Length, out var ptr, out var len, out var message);
                    Native.Check(code, message);
                    json = Native.TakeString(ptr, len);
                }
            }
            catch (ObjectDisposedException)
            {
                return Detail<T>.Error(defaultValue, Native.ErrorKindOf(handle.IsClosed ? Native.Unevaluated.ClientReleased : Native.Unevaluated.ContextMissing));
            }
            return Detail<T>.FromJson((Dictionary<string, object>)Json.Parse(json), convert);
        }

        /// <summary>
        /// Evaluates for a context given as JSON that may not be valid: an invalid context is
        /// answered with the default and an ERROR/INVALID_CONTEXT reason. The default is JSON
        /// text. Throws only when the context or default is not JSON at all.
        /// </summary>
        public Detail<object> DetailForJsonContext(string flagKey, string contextJson, ValueKind kind, string defaultJson)
        {
            if (flagKey == null) throw new VexilException(VexilErrorCode.NullArgument, "flagKey: must not be null");
            if (contextJson == null) throw new VexilException(VexilErrorCode.NullArgument, "contextJson: must not be null");
            if (defaultJson == null) throw new VexilException(VexilErrorCode.NullArgument, "defaultJson: must not be null");
            var key = Native.Utf8(flagKey);
            var ctx = Native.Utf8(contextJson);
            var def = Native.Utf8(defaultJson);
            string json;
            fixed (byte* k = key)
            fixed (byte* c = ctx)
            fixed (byte* d = def)
            {
                var code = Native.vexil_variation_detail_json_context(handle, k, (UIntPtr)key.Length, c, (UIntPtr)ctx.Length, (int)kind, d, (UIntPtr)def.Length, out var ptr, out var len, out var message);
                Native.Check(code, message);
                json = Native.TakeString(ptr, len);
            }
            return Detail<object>.FromJson((Dictionary<string, object>)Json.Parse(json), v => v);
        }

        /// <summary>Every flag's detail for the context (remote mode: the identified context); Value is null for a flag that cannot be served.</summary>
        public Dictionary<string, Detail<object>> AllFlags(Context context)
        {
            if (context == null) throw new VexilException(VexilErrorCode.NullArgument, "context: must not be null");
            Native.Check(Native.vexil_all_flags(handle, context.Handle, out var ptr, out var len, out var message), message);
            var all = (Dictionary<string, object>)Json.Parse(Native.TakeString(ptr, len));
            var flags = new Dictionary<string, Detail<object>>();
            foreach (var pair in all) flags[pair.Key] = Detail<object>.FromJson((Dictionary<string, object>)pair.Value, v => v);
            return flags;
        }

        /// <summary>Records a metric event for the context, with an optional value; returns at once.</summary>
        public void Track(string eventName, Context context, double? value = null)
        {
            if (eventName == null) throw new VexilException(VexilErrorCode.NullArgument, "eventName: must not be null");
            if (context == null) throw new VexilException(VexilErrorCode.NullArgument, "context: must not be null");
            var name = Native.Utf8(eventName);
            fixed (byte* n = name)
            {
                Native.Check(Native.vexil_track(handle, n, (UIntPtr)name.Length, context.Handle, value.HasValue ? (byte)1 : (byte)0, value ?? 0, out var message), message);
            }
        }

        /// <summary>Sends pending events now; waits up to the timeout. Returns whether everything was delivered.</summary>
        public bool Flush(TimeSpan timeout)
        {
            Native.Check(Native.vexil_client_flush(handle, Millis(timeout), out var delivered, out var message), message);
            return delivered != 0;
        }

        /// <summary>
        /// Client and mobile keys: evaluates for the context from now on and waits up to the
        /// timeout for its values. Returns whether they arrived. Local mode returns true at once.
        /// </summary>
        public bool Identify(Context context, TimeSpan timeout)
        {
            if (context == null) throw new VexilException(VexilErrorCode.NullArgument, "context: must not be null");
            Native.Check(Native.vexil_client_identify(handle, context.Handle, Millis(timeout), out var arrived, out var message), message);
            return arrived != 0;
        }

        /// <summary>
        /// Raised after every change of flag data, on a thread of this client's own (one
        /// change at a time, in order), never on the native thread: a slow handler delays
        /// other handlers, never flag updates.
        /// </summary>
        public event EventHandler<FlagChangeEventArgs> FlagsChanged
        {
            add
            {
                lock (changeLock)
                {
                    if (callback == null) StartChanges();
                    flagsChanged += value;
                }
            }
            remove
            {
                lock (changeLock) flagsChanged -= value;
            }
        }

        void StartChanges()
        {
            pending = new BlockingCollection<FlagChangeEventArgs>();
            var queue = pending;
            Native.ChangeCallback onChange = (userData, keys, len, version) =>
            {
                try
                {
                    var text = Encoding.UTF8.GetString((byte*)keys, (int)len.ToUInt64());
                    var list = new List<string>();
                    foreach (var key in (List<object>)Json.Parse(text)) list.Add((string)key);
                    queue.TryAdd(new FlagChangeEventArgs(list, version));
                }
                catch (Exception)
                {
                    // Never let an exception unwind into native code.
                }
            };
            Native.Check(Native.vexil_client_on_change(handle, onChange, IntPtr.Zero, out listenerId, out var message), message);
            callback = onChange;
            dispatcher = new Thread(() =>
            {
                foreach (var change in queue.GetConsumingEnumerable())
                {
                    EventHandler<FlagChangeEventArgs> handlers;
                    lock (changeLock) handlers = flagsChanged;
                    try
                    {
                        handlers?.Invoke(this, change);
                    }
                    catch (Exception)
                    {
                        // A failing handler must not stop the deliveries to the others.
                    }
                }
            })
            { IsBackground = true, Name = "vexil-changes" };
            dispatcher.Start();
        }

        /// <summary>Times the same evaluation as <see cref="BoolVariation"/> inside the native library (no interop), for benchmarks.</summary>
        public TimeSpan BenchmarkNativeBoolVariation(string flagKey, Context context, ulong iterations)
        {
            var key = Native.Utf8(flagKey);
            fixed (byte* k = key)
            {
                Native.Check(Native.vexil_benchmark_bool_variation(handle, k, (UIntPtr)key.Length, context.Handle, iterations, out var ns, out var message), message);
                return TimeSpan.FromTicks((long)(ns / 100));
            }
        }

        /// <summary>Flushes events (up to 5 s) and stops the background work; variation calls keep answering from the last data until <see cref="Dispose"/>.</summary>
        public void Close()
        {
            if (handle.IsClosed) return;
            Native.Check(Native.vexil_client_close(handle, out var message), message);
        }

        /// <summary>Closes the client (see <see cref="Close"/>), ends change deliveries and releases the native client. Calling it again does nothing.</summary>
        public void Dispose()
        {
            lock (changeLock)
            {
                if (handle.IsClosed) return;
                if (callback != null)
                {
                    // Waits for a running native callback; none runs afterwards.
                    Native.vexil_client_remove_listener(handle, listenerId, out var message);
                    Native.vexil_string_free(message);
                    pending.CompleteAdding();
                    callback = null;
                }
            }
            if (dispatcher != null && dispatcher != Thread.CurrentThread) dispatcher.Join();
            handle.Dispose();
        }

        static ulong Millis(TimeSpan timeout) => timeout <= TimeSpan.Zero ? 0UL : (ulong)timeout.TotalMilliseconds;

        // ----- waits that block no thread: the native client completes a Task -----

        /// <summary>
        /// <see cref="WaitForInitialization"/> as a Task: the waiting happens on the client's own
        /// thread, and no thread of the caller's or of the pool is blocked.
        /// </summary>
        public Task<ClientStatus> WaitForInitializationAsync(TimeSpan timeout)
        {
            var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            var userData = GCHandle.ToIntPtr(GCHandle.Alloc(done));
            Started(Native.vexil_client_when_initialized(handle, Millis(timeout), Completion, userData, out var message), message, userData);
            return done.Task.ContinueWith(t => (ClientStatus)t.Result, TaskContinuationOptions.ExecuteSynchronously);
        }

        /// <summary><see cref="Flush"/> as a Task (see <see cref="WaitForInitializationAsync"/>).</summary>
        public Task<bool> FlushAsync(TimeSpan timeout)
        {
            var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            var userData = GCHandle.ToIntPtr(GCHandle.Alloc(done));
            Started(Native.vexil_client_when_flushed(handle, Millis(timeout), Completion, userData, out var message), message, userData);
            return done.Task.ContinueWith(t => t.Result != 0, TaskContinuationOptions.ExecuteSynchronously);
        }

        /// <summary><see cref="Identify"/> as a Task (see <see cref="WaitForInitializationAsync"/>).</summary>
        public Task<bool> IdentifyAsync(Context context, TimeSpan timeout)
        {
            if (context == null) throw new VexilException(VexilErrorCode.NullArgument, "context: must not be null");
            var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            var userData = GCHandle.ToIntPtr(GCHandle.Alloc(done));
            Started(Native.vexil_client_when_identified(handle, context.Handle, Millis(timeout), Completion, userData, out var message), message, userData);
            return done.Task.ContinueWith(t => t.Result != 0, TaskContinuationOptions.ExecuteSynchronously);
        }

        /// <summary>A wait that could not start: its handle is released, and the failure thrown.</summary>
        static void Started(int code, IntPtr message, IntPtr userData)
        {
            if (code == 0) return;
            GCHandle.FromIntPtr(userData).Free();
            Native.Check(code, message);
        }

        // One delegate for every wait, alive as long as the process: the native client calls it
        // exactly once per wait, with the handle of that wait's TaskCompletionSource.
        static readonly Native.DoneCallback Completion = (userData, result) =>
        {
            var handle = GCHandle.FromIntPtr(userData);
            var done = (TaskCompletionSource<int>)handle.Target;
            handle.Free();
            done.TrySetResult(result);
        };

#if !VEXIL_NO_ASYNC_DISPOSABLE
        /// <summary>
        /// Flushes pending events (up to 5 s) without blocking a thread, then disposes the client
        /// (see <see cref="Dispose"/>).
        /// </summary>
        public ValueTask DisposeAsync()
        {
            // Not `async`: the class is `unsafe`, where C# 7 allows no `await`.
            if (handle.IsClosed) return default(ValueTask);
            return new ValueTask(FlushAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => Dispose(), TaskContinuationOptions.ExecuteSynchronously));
        }
#endif
    }
}
