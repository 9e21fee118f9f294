using System;
using System.Collections.Generic;

namespace Vexil
{
    /// <summary>
    /// What flags are evaluated for: a kind, a key and attributes, or several parts (a
    /// multi-kind context). Parsed and validated once in native memory, reusable by any
    /// number of calls and threads; release it with <see cref="Dispose"/>.
    /// </summary>
    public sealed unsafe class Context : IDisposable
    {
        internal readonly ContextHandle Handle;

        /// <summary>The context's canonical JSON.</summary>
        public string Json { get; }

        Context(ContextHandle handle, string json)
        {
            Handle = handle;
            Json = json;
        }

        /// <summary>Starts a single-kind context.</summary>
        public static ContextBuilder Builder(string kind, string key) => new ContextBuilder(kind, key);

        /// <summary>A multi-kind context of several single-kind parts (one per kind).</summary>
        public static Context Multi(params ContextBuilder[] parts)
        {
            if (parts == null) throw new VexilException(VexilErrorCode.NullArgument, "parts: must not be null");
            var contexts = new List<object>();
            foreach (var part in parts) contexts.Add(part.ToObject());
            return Parse(Vexil.Json.Write(new Dictionary<string, object> { { "kind", "multi" }, { "contexts", contexts } }));
        }

        /// <summary>Reads a context from its canonical JSON; throws a <see cref="VexilException"/> saying why it is not valid.</summary>
        public static Context Parse(string json)
        {
            if (json == null) throw new VexilException(VexilErrorCode.NullArgument, "json: must not be null");
            var bytes = Native.Utf8(json);
            IntPtr ptr, message;
            int code;
            fixed (byte* p = bytes)
            {
                code = Native.vexil_context_new(p, (UIntPtr)bytes.Length, out ptr, out message);
            }
            Native.Check(code, message);
            return new Context(new ContextHandle(ptr), json);
        }

        /// <summary>Releases the native context (calls using it afterwards answer defaults or throw).</summary>
        public void Dispose() => Handle.Dispose();
    }

    /// <summary>Builds a single-kind <see cref="Context"/>.</summary>
    public sealed class ContextBuilder
    {
        readonly string kind;
        readonly string key;
        readonly Dictionary<string, object> attributes = new Dictionary<string, object>();
        readonly List<string> privateAttributes = new List<string>();

        internal ContextBuilder(string kind, string key)
        {
            this.kind = kind;
            this.key = key;
        }

        /// <summary>Adds an attribute: a string, number, bool, null, list or dictionary.</summary>
        public ContextBuilder Set(string name, object value)
        {
            attributes[name] = value;
            return this;
        }

        /// <summary>
        /// Marks attributes of this context that events never carry: names, or JSON Pointers
        /// into the attributes ("/address/street"). Flags are still evaluated with them; events
        /// list their names, never their values.
        /// </summary>
        public ContextBuilder Private(params string[] references)
        {
            privateAttributes.AddRange(references);
            return this;
        }

        internal Dictionary<string, object> ToObject()
        {
            var o = new Dictionary<string, object> { ["kind"] = kind, ["key"] = key };
            if (attributes.Count > 0) o["attributes"] = attributes;
            if (privateAttributes.Count > 0) o["private_attributes"] = privateAttributes;
            return o;
        }

        /// <summary>Validates and builds the context.</summary>
        public Context Build() => Context.Parse(Json.Write(ToObject()));
    }
}
