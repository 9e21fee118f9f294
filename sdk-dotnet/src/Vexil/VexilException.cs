using System;

namespace Vexil
{
    /// <summary>
    /// The kind of a <see cref="VexilException"/>: the SDK core's table of error codes (the VexilCode
    /// of the C ABI, the same numbers and names in every Vexil SDK), and <see cref="Timeout"/> for
    /// the waits of this library.
    /// </summary>
    public enum VexilErrorCode
    {
        /// <summary>A required argument was null (the message names it).</summary>
        NullArgument = 1,
        /// <summary>A string was not valid UTF-8.</summary>
        InvalidUtf8 = 2,
        /// <summary>A JSON argument did not parse.</summary>
        InvalidJson = 3,
        /// <summary>A context is not valid.</summary>
        InvalidContext = 4,
        /// <summary>A client option is not valid (the message names the field).</summary>
        InvalidOptions = 5,
        /// <summary>The SDK key is not a server, client or mobile key.</summary>
        InvalidKey = 6,
        /// <summary>The endpoint is not a valid http:// or https:// address.</summary>
        InvalidEndpoint = 7,
        /// <summary>Another argument is out of range.</summary>
        InvalidArgument = 8,
        /// <summary>The client's background runtime could not start.</summary>
        Runtime = 9,
        /// <summary>The call was made from a change handler where it would deadlock.</summary>
        InCallback = 10,
        /// <summary>A bug in Vexil, caught at the native boundary.</summary>
        Internal = 11,
        /// <summary>The client or context was closed before the call.</summary>
        Closed = 12,
        /// <summary>Events were not delivered, or an identified context's values did not arrive, in time.</summary>
        Timeout = 100,
    }

    /// <summary>What every failing call of this library throws: a code and a message naming the argument or field.</summary>
    public sealed class VexilException : Exception
    {
        /// <summary>What went wrong.</summary>
        public VexilErrorCode Code { get; }

        /// <summary>Creates an exception with its code and message.</summary>
        public VexilException(VexilErrorCode code, string message) : base(message) { Code = code; }
    }
}
