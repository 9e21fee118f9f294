using System;
using System.Runtime.InteropServices;

namespace Vexil
{
    /// <summary>
    /// Flags and segments held in memory, standing in for the server in an application's
    /// tests: set <see cref="ClientOptions.TestData"/>, then change flags one at a time. Each
    /// change reaches every client at once (and their <see cref="VexilClient.FlagsChanged"/>
    /// handlers); a flag that would not compile throws a <see cref="VexilException"/> naming the
    /// field, and nothing changes. Thread-safe.
    /// </summary>
    public sealed unsafe class TestData : IDisposable
    {
        internal readonly TestDataHandle Handle;

        /// <summary>An empty source.</summary>
        public TestData()
        {
            Native.Check(Native.vexil_test_data_new(out var ptr, out var message), message);
            Handle = new TestDataHandle(ptr);
        }

        /// <summary>Adds or replaces a flag given as JSON in the export format (key, kind, variations, on, rules, fallthrough, ...).</summary>
        public void UpdateFlag(string flagJson) => Update(false, flagJson, "flagJson");

        /// <summary>Adds or replaces a segment given as JSON in the export format.</summary>
        public void UpdateSegment(string segmentJson) => Update(true, segmentJson, "segmentJson");

        void Update(bool segment, string text, string name)
        {
            if (text == null) throw new VexilException(VexilErrorCode.NullArgument, name + ": must not be null");
            var json = Native.Utf8(text);
            fixed (byte* p = json)
            {
                Native.Check(Native.vexil_test_data_update(Handle, segment ? (byte)1 : (byte)0, p, (UIntPtr)json.Length, out var message), message);
            }
        }

        /// <summary>Makes the flag serve one value to every context (a flag of the value's type): a bool, a string, a number.</summary>
        public void SetValue(string key, object value)
        {
            if (key == null) throw new VexilException(VexilErrorCode.NullArgument, "key: must not be null");
            var k = Native.Utf8(key);
            var v = Native.Utf8(Json.Write(value));
            fixed (byte* kp = k)
            fixed (byte* vp = v)
            {
                Native.Check(Native.vexil_test_data_set_value(Handle, kp, (UIntPtr)k.Length, vp, (UIntPtr)v.Length, out var message), message);
            }
        }

        /// <summary>Removes the flag; whether it was there.</summary>
        public bool RemoveFlag(string key) => Remove(false, key);

        /// <summary>Removes the segment; whether it was there.</summary>
        public bool RemoveSegment(string key) => Remove(true, key);

        bool Remove(bool segment, string key)
        {
            if (key == null) return false;
            var k = Native.Utf8(key);
            fixed (byte* p = k)
            {
                Native.Check(Native.vexil_test_data_remove(Handle, segment ? (byte)1 : (byte)0, p, (UIntPtr)k.Length, out var removed, out var message), message);
                return removed != 0;
            }
        }

        /// <summary>Releases the source; clients made on it keep serving what they hold.</summary>
        public void Dispose() => Handle.Dispose();
    }

    /// <summary>A native test data source, released exactly once (vexil_test_data_free).</summary>
    internal sealed class TestDataHandle : SafeHandle
    {
        internal TestDataHandle(IntPtr handle) : base(IntPtr.Zero, true) { SetHandle(handle); }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            Native.vexil_test_data_free(handle);
            return true;
        }
    }
}
