using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Vexil
{
    /// <summary>The C ABI of the native library (include/vexil.h), one declaration per function.</summary>
    internal static unsafe class Native
    {
        const string Library = "vexil_ffi";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ChangeCallback(IntPtr userData, IntPtr flagKeysJson, UIntPtr flagKeysJsonLen, long version);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void vexil_string_free(IntPtr s);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_context_new(byte* json, UIntPtr jsonLen, out IntPtr context, out IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void vexil_context_free(IntPtr context);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_client_new(byte* key, UIntPtr keyLen, byte* options, UIntPtr optionsLen, out IntPtr client, out IntPtr errorMessage);

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

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_bool_variation(ClientHandle client, byte* flagKey, UIntPtr flagKeyLen, ContextHandle context, byte defaultValue, out byte value, IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_number_variation(ClientHandle client, byte* flagKey, UIntPtr flagKeyLen, ContextHandle context, double defaultValue, out double value, IntPtr errorMessage);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int vexil_string_variation(ClientHandle client, byte* flagKey, UIntPtr flagKeyLen, ContextHandle context, byte* defaultValue, UIntPtr defaultLen, out IntPtr value, out UIntPtr valueLen, IntPtr errorMessage);

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
    }

    /// <summary>A native client, released exactly once (vexil_client_free).</summary>
    internal sealed class ClientHandle : SafeHandle
    {
        internal ClientHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            return Native.vexil_client_free(handle, out var message) == 0 || FreeMessage(message);
        }

        static bool FreeMessage(IntPtr message)
        {
            Native.vexil_string_free(message);
            return false;
        }
    }

    /// <summary>A native context, released exactly once (vexil_context_free).</summary>
    internal sealed class ContextHandle : SafeHandle
    {
        internal ContextHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            Native.vexil_context_free(handle);
            return true;
        }
    }
}
