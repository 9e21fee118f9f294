using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Vexil
{
    /// <summary>
    /// A small JSON reader and writer, so that the library needs nothing beyond
    /// netstandard2.0. Objects are <c>Dictionary&lt;string, object&gt;</c>, arrays
    /// <c>List&lt;object&gt;</c>, numbers <c>double</c>, then <c>string</c>, <c>bool</c> and
    /// <c>null</c>.
    /// </summary>
    public static class Json
    {
        /// <summary>Parses JSON text; throws <see cref="FormatException"/> naming the offset.</summary>
        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException(nameof(text));
            var reader = new Reader(text);
            reader.SkipSpace();
            var value = reader.ReadValue(0);
            reader.SkipSpace();
            if (reader.Position != text.Length) throw reader.Error("unexpected text after the value");
            return value;
        }

        /// <summary>Writes a value (the types above, or any integer or floating type) as JSON.</summary>
        public static string Write(object value)
        {
            var builder = new StringBuilder();
            Write(builder, value);
            return builder.ToString();
        }

        static void Write(StringBuilder b, object value)
        {
            if (value == null) { b.Append("null"); return; }
            if (value is bool flag) { b.Append(flag ? "true" : "false"); return; }
            if (value is string s) { WriteString(b, s); return; }
            if (value is double d) { WriteNumber(b, d); return; }
            if (value is float f) { WriteNumber(b, f); return; }
            if (value is decimal m) { b.Append(m.ToString(CultureInfo.InvariantCulture)); return; }
            if (value is int || value is long || value is short || value is byte || value is uint || value is ulong || value is ushort || value is sbyte)
            {
                b.Append(Convert.ToString(value, CultureInfo.InvariantCulture));
                return;
            }
            if (value is RawJson raw) { b.Append(raw.Text); return; }
            if (value is IDictionary<string, object> map)
            {
                b.Append('{');
                var first = true;
                foreach (var pair in map)
                {
                    if (!first) b.Append(',');
                    first = false;
                    WriteString(b, pair.Key);
                    b.Append(':');
                    Write(b, pair.Value);
                }
                b.Append('}');
                return;
            }
            if (value is System.Collections.IEnumerable list)
            {
                b.Append('[');
                var head = true;
                foreach (var item in list)
                {
                    if (!head) b.Append(',');
                    head = false;
                    Write(b, item);
                }
                b.Append(']');
                return;
            }
            throw new ArgumentException("cannot write a " + value.GetType().Name + " as JSON");
        }

        static void WriteNumber(StringBuilder b, double d)
        {
            if (double.IsNaN(d) || double.IsInfinity(d)) throw new ArgumentException("JSON has no NaN or infinity");
            if (d == Math.Floor(d) && Math.Abs(d) < 1e15) b.Append(((long)d).ToString(CultureInfo.InvariantCulture));
            else b.Append(d.ToString("R", CultureInfo.InvariantCulture));
        }

        static void WriteString(StringBuilder b, string s)
        {
            b.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': b.Append("\\\""); break;
                    case '\\': b.Append("\\\\"); break;
                    case '\n': b.Append("\\n"); break;
                    case '\r': b.Append("\\r"); break;
                    case '\t': b.Append("\\t"); break;
                    default:
                        if (c < 0x20) b.Append("\\u").Append(((int)c).ToString("x4"));
                        else b.Append(c);
                        break;
                }
            }
            b.Append('"');
        }

        /// <summary>Values compared as JSON: numbers by value, objects by keys.</summary>
        public static bool Same(object a, object b)
        {
            if (a == null || b == null) return a == null && b == null;
            if (a is double x && b is double y) return x == y;
            if (a is string s && b is string t) return s == t;
            if (a is bool p && b is bool q) return p == q;
            if (a is List<object> la && b is List<object> lb)
            {
                if (la.Count != lb.Count) return false;
                for (var i = 0; i < la.Count; i++) if (!Same(la[i], lb[i])) return false;
                return true;
            }
            if (a is Dictionary<string, object> ma && b is Dictionary<string, object> mb)
            {
                if (ma.Count != mb.Count) return false;
                foreach (var pair in ma)
                {
                    if (!mb.TryGetValue(pair.Key, out var other) || !Same(pair.Value, other)) return false;
                }
                return true;
            }
            return false;
        }

        sealed class Reader
        {
            readonly string text;
            public int Position;

            public Reader(string text) { this.text = text; }

            public FormatException Error(string what) =>
                new FormatException("invalid JSON at offset " + Position + ": " + what);

            public void SkipSpace()
            {
                while (Position < text.Length && (text[Position] == ' ' || text[Position] == '\t' || text[Position] == '\n' || text[Position] == '\r')) Position++;
            }

            public object ReadValue(int depth)
            {
                if (depth > 128) throw Error("nested too deeply");
                if (Position >= text.Length) throw Error("unexpected end");
                var c = text[Position];
                switch (c)
                {
                    case '{': return ReadObject(depth);
                    case '[': return ReadArray(depth);
                    case '"': return ReadString();
                    case 't': Expect("true"); return true;
                    case 'f': Expect("false"); return false;
                    case 'n': Expect("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                        throw Error("unexpected character '" + c + "'");
                }
            }

            void Expect(string word)
            {
                if (string.CompareOrdinal(text, Position, word, 0, word.Length) != 0) throw Error("expected " + word);
                Position += word.Length;
            }

            Dictionary<string, object> ReadObject(int depth)
            {
                var map = new Dictionary<string, object>();
                Position++;
                SkipSpace();
                if (Position < text.Length && text[Position] == '}') { Position++; return map; }
                while (true)
                {
                    SkipSpace();
                    if (Position >= text.Length || text[Position] != '"') throw Error("expected a key");
                    var key = ReadString();
                    SkipSpace();
                    if (Position >= text.Length || text[Position] != ':') throw Error("expected ':'");
                    Position++;
                    SkipSpace();
                    map[key] = ReadValue(depth + 1);
                    SkipSpace();
                    if (Position >= text.Length) throw Error("unexpected end");
                    if (text[Position] == ',') { Position++; continue; }
                    if (text[Position] == '}') { Position++; return map; }
                    throw Error("expected ',' or '}'");
                }
            }

            List<object> ReadArray(int depth)
            {
                var list = new List<object>();
                Position++;
                SkipSpace();
                if (Position < text.Length && text[Position] == ']') { Position++; return list; }
                while (true)
                {
                    SkipSpace();
                    list.Add(ReadValue(depth + 1));
                    SkipSpace();
                    if (Position >= text.Length) throw Error("unexpected end");
                    if (text[Position] == ',') { Position++; continue; }
                    if (text[Position] == ']') { Position++; return list; }
                    throw Error("expected ',' or ']'");
                }
            }

            string ReadString()
            {
                Position++;
                var b = new StringBuilder();
                while (true)
                {
                    if (Position >= text.Length) throw Error("unterminated string");
                    var c = text[Position++];
                    if (c == '"') return b.ToString();
                    if (c != '\\') { b.Append(c); continue; }
                    if (Position >= text.Length) throw Error("unterminated escape");
                    var e = text[Position++];
                    switch (e)
                    {
                        case '"': b.Append('"'); break;
                        case '\\': b.Append('\\'); break;
                        case '/': b.Append('/'); break;
                        case 'b': b.Append('\b'); break;
                        case 'f': b.Append('\f'); break;
                        case 'n': b.Append('\n'); break;
                        case 'r': b.Append('\r'); break;
                        case 't': b.Append('\t'); break;
                        case 'u':
                            if (Position + 4 > text.Length) throw Error("short \\u escape");
                            b.Append((char)int.Parse(text.Substring(Position, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                            Position += 4;
                            break;
                        default: throw Error("unknown escape \\" + e);
                    }
                }
            }

            double ReadNumber()
            {
                var start = Position;
                while (Position < text.Length && "+-0123456789.eE".IndexOf(text[Position]) >= 0) Position++;
                if (!double.TryParse(text.Substring(start, Position - start), NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
                {
                    Position = start;
                    throw Error("invalid number");
                }
                return number;
            }
        }
    }

    /// <summary>Already-encoded JSON, written as is by <see cref="Json.Write(object)"/>.</summary>
    public sealed class RawJson
    {
        /// <summary>The JSON text.</summary>
        public string Text { get; }

        /// <summary>Wraps JSON text (not checked here; the native library checks it).</summary>
        public RawJson(string text) { Text = text ?? throw new ArgumentNullException(nameof(text)); }

        /// <inheritdoc/>
        public override string ToString() => Text;
    }
}
