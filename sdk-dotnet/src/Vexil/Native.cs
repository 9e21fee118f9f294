using System;
using System.Runtime.InteropServices;
using System.Security;
using System.Text;
using System.Threading;

namespace Vexil
{
    /// <summary>
    /// The C ABI of the native library (include/vexil.h), one declaration per function. No
    /// security stack walk per call (.NET Framework makes one otherwise; Mono and .NET 8
    /// ignore the attribute).
    /// </summary>
    [SuppressUnmanagedCodeSecurity]
    internal static unsafe class Native
    {
        const string Library = "vexil_ffi";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ChangeCallback(IntPtr userData, IntPtr flagKeysJson, UIntPtr flagKeysJsonLen, long version);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void vexil_string_free(IntPtr s);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        static extern IntPtr vexil_unevaluated_error_kind(int why);

        /// <summary>Why a variation is answered without evaluating (VexilUnevaluated in vexil.h).</summary>
        internal enum Unevaluated { ClientReleased = 0, ContextMissing = 1, FlagKeyNotText = 2, DefaultNotJson = 3 }

        /// <summary>The error kind the SDK core's table gives a variation answered without evaluating.</summary>
        internal static string ErrorKindOf(Unevaluated why) => Marshal.PtrToStringAnsi(vexil_unevaluated_error_kind((int)why));

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_context_new(byte* json, UIntPtr jsonLen, out IntPtr context, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void vexil_context_free(IntPtr context);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCallback(IntPtr userData, int level, IntPtr message, UIntPtr messageLen);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_new_with_log(byte* key, UIntPtr keyLen, byte* options, UIntPtr optionsLen,
            LogCallback logCallback, int logMaxLevel, IntPtr logUserData, out IntPtr client, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_new_with_test_data(byte* key, UIntPtr keyLen, byte* options, UIntPtr optionsLen,
            TestDataHandle testData, out IntPtr client, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_test_data_new(out IntPtr testData, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_test_data_update(TestDataHandle testData, byte segment, byte* json, UIntPtr jsonLen, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_test_data_set_value(TestDataHandle testData, byte* key, UIntPtr keyLen, byte* json, UIntPtr jsonLen, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_test_data_remove(TestDataHandle testData, byte segment, byte* key, UIntPtr keyLen,
            out byte removed, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void vexil_test_data_free(IntPtr testData);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_close(ClientHandle client, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_free(IntPtr client, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_wait_for_initialization(ClientHandle client, ulong timeoutMs, out int status, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_status(ClientHandle client, out int status, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_state(ClientHandle client, out IntPtr json, out UIntPtr jsonLen, out IntPtr errorMessage);

        // The typed variations are the hot path: blittable arguments only (pointers and
        // numbers), so that the runtime copies nothing and runs no marshalling code; the
        // handles' lifetimes are guarded by GatedHandle.Enter/Leave around the call.

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int vexil_bool_variation(IntPtr client, byte* flagKey, UIntPtr flagKeyLen, IntPtr context, byte defaultValue, byte* value, IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int vexil_number_variation(IntPtr client, byte* flagKey, UIntPtr flagKeyLen, IntPtr context, double defaultValue, double* value, IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int vexil_string_variation(IntPtr client, byte* flagKey, UIntPtr flagKeyLen, IntPtr context, byte* defaultValue, UIntPtr defaultLen, IntPtr* value, UIntPtr* valueLen, IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_variation_detail(ClientHandle client, byte* flagKey, UIntPtr flagKeyLen, ContextHandle context, int kind, byte* defaultJson, UIntPtr defaultJsonLen, out IntPtr json, out UIntPtr jsonLen, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_variation_detail_json_context(ClientHandle client, byte* flagKey, UIntPtr flagKeyLen, byte* contextJson, UIntPtr contextJsonLen, int kind, byte* defaultJson, UIntPtr defaultJsonLen, out IntPtr json, out UIntPtr jsonLen, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_all_flags(ClientHandle client, ContextHandle context, out IntPtr json, out UIntPtr jsonLen, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_benchmark_bool_variation(ClientHandle client, byte* flagKey, UIntPtr flagKeyLen, ContextHandle context, ulong iterations, out ulong elapsedNs, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_track(ClientHandle client, byte* name, UIntPtr nameLen, ContextHandle context, byte hasValue, double value, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_flush(ClientHandle client, ulong timeoutMs, out byte delivered, out IntPtr errorMessage);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void DoneCallback(IntPtr userData, int result);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_when_initialized(ClientHandle client, ulong timeoutMs, DoneCallback callback, IntPtr userData, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_when_flushed(ClientHandle client, ulong timeoutMs, DoneCallback callback, IntPtr userData, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_when_identified(ClientHandle client, ContextHandle context, ulong timeoutMs, DoneCallback callback, IntPtr userData, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_identify(ClientHandle client, ContextHandle context, ulong timeoutMs, out byte arrived, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_on_change(ClientHandle client, ChangeCallback callback, IntPtr userData, out ulong listenerId, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_remove_listener(ClientHandle client, ulong listenerId, out IntPtr errorMessage);

        /// <summary>Throws the failure of a call as a <see cref="VexilException"/>.</summary>
        internal static void Check(int code, IntPtr errorMessage)
        {
            if (code == 0) return;
            throw new VexilException((VexilErrorCode)code, TakeString(errorMessage, null));
        }

        /// <summary>Copies a NUL-terminated (or length-given) UTF-8 string of the library and frees it.</summary>
        internal static string TakeString(IntPtr s, UIntPtr? length)
        {
            if (s == IntPtr.Zero) return "";
            try
            {
                var bytes = (byte*)s;
                var n = length.HasValue ? (int)length.Value.ToUInt64() : Strlen(bytes);
                return Encoding.UTF8.GetString(bytes, n);
            }
            finally
            {
                vexil_string_free(s);
            }
        }

        static int Strlen(byte* s)
        {
            var n = 0;
            while (s[n] != 0) n++;
            return n;
        }

        internal static byte[] Utf8(string s) => s == null ? null : Encoding.UTF8.GetBytes(s);

        /// <summary>
        /// This thread's buffer for the flag key of a variation call: used only for the
        /// duration of one native call, which never calls back into managed code. A buffer
        /// per thread costs less than stackalloc on Mono, and nothing is allocated per call.
        /// </summary>
        [ThreadStatic] static byte[] keyBuffer;

        /// <summary>Size of <see cref="KeyBuffer"/>: longer keys are encoded on the heap.</summary>
        const int KeyBufferBytes = 128;

        internal static byte[] KeyBuffer => keyBuffer ?? (keyBuffer = new byte[KeyBufferBytes]);

        /// <summary>
        /// Copies an ASCII string of at most <paramref name="capacity"/> characters into
        /// <paramref name="buffer"/> (ASCII is its own UTF-8) and returns its length; returns -1
        /// for a longer string or one with other characters, which the caller encodes with
        /// <see cref="Utf8"/>. Flag keys are short ASCII, and this costs a fraction of the
        /// general encoder.
        /// </summary>
        internal static int CopyAscii(string s, byte* buffer, int capacity)
        {
            var n = s.Length;
            if (n > capacity) return -1;
            fixed (char* chars = s)
            {
                for (var i = 0; i < n; i++)
                {
                    var c = chars[i];
                    if (c >= 0x80) return -1;
                    buffer[i] = (byte)c;
                }
            }
            return n;
        }
    }

    /// <summary>
    /// A native handle that the variation calls use through a gate instead of the SafeHandle
    /// reference count: <see cref="Enter"/> and <see cref="Leave"/> are one interlocked
    /// increment and decrement, where DangerousAddRef and DangerousRelease (or marshalling
    /// the SafeHandle) cost noticeably more on this hot path. Releasing the handle closes the
    /// gate and waits for the calls inside, which are short and never block, before the
    /// native object is freed. Every other call passes the SafeHandle itself.
    /// </summary>
    internal abstract class GatedHandle : SafeHandle
    {
        /// <summary>Added to the count of calls inside when the gate closes: the count turns negative.</summary>
        const int Closed = int.MinValue;

        int callsInside;

        protected GatedHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }

        public override bool IsInvalid => handle == IntPtr.Zero;

        /// <summary>
        /// Admits a call and returns the native pointer, valid until <see cref="Leave"/>; returns
        /// IntPtr.Zero once the handle is released, and then nothing is to be left.
        /// </summary>
        internal IntPtr Enter()
        {
            if (Interlocked.Increment(ref callsInside) > 0) return handle;
            Interlocked.Decrement(ref callsInside);
            return IntPtr.Zero;
        }

        internal void Leave() => Interlocked.Decrement(ref callsInside);

        protected sealed override bool ReleaseHandle()
        {
            Interlocked.Add(ref callsInside, Closed);
            var spin = new SpinWait();
            while (Volatile.Read(ref callsInside) != Closed) spin.SpinOnce();
            return Free(handle);
        }

        /// <summary>Frees the native object; no call uses it any more.</summary>
        protected abstract bool Free(IntPtr native);
    }

    /// <summary>A native client, released exactly once (vexil_client_free).</summary>
    internal sealed class ClientHandle : GatedHandle
    {
        internal ClientHandle(IntPtr handle, Native.LogCallback log) : base(handle) { Log = log; }

        // The native client calls it until it is freed, the handle's finalizer included:
        // held here, it lives as long as the handle.
        internal readonly Native.LogCallback Log;

        protected override bool Free(IntPtr native)
        {
            return Native.vexil_client_free(native, out var message) == 0 || FreeMessage(message);
        }

        static bool FreeMessage(IntPtr message)
        {
            Native.vexil_string_free(message);
            return false;
        }
    }

    /// <summary>A native context, released exactly once (vexil_context_free).</summary>
    internal sealed class ContextHandle : GatedHandle
    {
        internal ContextHandle(IntPtr handle) : base(handle) { }

        protected override bool Free(IntPtr native)
        {
            Native.vexil_context_free(native);
            return true;
        }
    }
}
