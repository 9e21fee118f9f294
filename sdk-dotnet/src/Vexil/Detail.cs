using System;
using System.Collections.Generic;

namespace Vexil
{
    /// <summary>The type a variation asks for.</summary>
    public enum ValueKind
    {
        /// <summary>A bool flag.</summary>
        Bool = 0,
        /// <summary>A string flag.</summary>
        String = 1,
        /// <summary>A number flag.</summary>
        Number = 2,
        /// <summary>Any JSON value, no type check.</summary>
        Json = 3,
    }

    /// <summary>Why a value was served.</summary>
    public sealed class Reason
    {
        /// <summary>OFF, TARGET_MATCH, RULE_MATCH, FALLTHROUGH, PREREQUISITE_FAILED or ERROR.</summary>
        public string Kind { get; internal set; }
        /// <summary>For RULE_MATCH: the rule's index.</summary>
        public int? RuleIndex { get; internal set; }
        /// <summary>For RULE_MATCH: the rule's id.</summary>
        public string RuleId { get; internal set; }
        /// <summary>For PREREQUISITE_FAILED: the prerequisite flag.</summary>
        public string PrerequisiteKey { get; internal set; }
        /// <summary>For ERROR: FLAG_NOT_FOUND, WRONG_TYPE, MALFORMED_FLAG, INVALID_CONTEXT or CLIENT_NOT_READY.</summary>
        public string ErrorKind { get; internal set; }
        /// <summary>The reason as its JSON object.</summary>
        public Dictionary<string, object> Json { get; internal set; }

        internal static Reason From(object json)
        {
            var map = json as Dictionary<string, object> ?? new Dictionary<string, object>();
            object v;
            return new Reason
            {
                Kind = map.TryGetValue("kind", out v) ? v as string : null,
                RuleIndex = map.TryGetValue("rule_index", out v) && v is double d ? (int?)d : null,
                RuleId = map.TryGetValue("rule_id", out v) ? v as string : null,
                PrerequisiteKey = map.TryGetValue("prerequisite_key", out v) ? v as string : null,
                ErrorKind = map.TryGetValue("error_kind", out v) ? v as string : null,
                Json = map,
            };
        }

        internal static Reason Error(string errorKind) => From(new Dictionary<string, object> { { "kind", "ERROR" }, { "error_kind", errorKind } });

        /// <inheritdoc/>
        public override string ToString() => Vexil.Json.Write(Json);
    }

    /// <summary>A variation's answer with everything known about it.</summary>
    public sealed class Detail<T>
    {
        /// <summary>The value served, or the default.</summary>
        public T Value { get; internal set; }
        /// <summary>The index of the variation served; null when the default was returned.</summary>
        public int? Variation { get; internal set; }
        /// <summary>Why.</summary>
        public Reason Reason { get; internal set; }
        /// <summary>Whether an experiment assigned the context.</summary>
        public bool InExperiment { get; internal set; }
        /// <summary>The experiment's key, or null.</summary>
        public string ExperimentKey { get; internal set; }
        /// <summary>The flag's version (0 when unknown).</summary>
        public long FlagVersion { get; internal set; }
        /// <summary>Where the data came from: NETWORK, STALE, CACHE, BOOTSTRAP or DEFAULTS.</summary>
        public string Source { get; internal set; }
        /// <summary>The environment version of the data.</summary>
        public long Version { get; internal set; }

        internal static Detail<T> FromJson(Dictionary<string, object> map, Func<object, T> value)
        {
            object v;
            return new Detail<T>
            {
                Value = value(map.TryGetValue("value", out v) ? v : null),
                Variation = map.TryGetValue("variation", out v) && v is double d ? (int?)d : null,
                Reason = Reason.From(map.TryGetValue("reason", out v) ? v : null),
                InExperiment = map.TryGetValue("in_experiment", out v) && v is bool b && b,
                ExperimentKey = map.TryGetValue("experiment_key", out v) ? v as string : null,
                FlagVersion = map.TryGetValue("flag_version", out v) && v is double f ? (long)f : 0,
                Source = map.TryGetValue("source", out v) ? v as string : null,
                Version = map.TryGetValue("version", out v) && v is double n ? (long)n : 0,
            };
        }

        internal static Detail<T> Error(T def, string errorKind) =>
            new Detail<T> { Value = def, Reason = Reason.Error(errorKind), Source = "DEFAULTS" };
    }

    /// <summary>A change of flag data.</summary>
    public sealed class FlagChangeEventArgs : EventArgs
    {
        /// <summary>Flags whose value may have changed, in key order.</summary>
        public IReadOnlyList<string> FlagKeys { get; }
        /// <summary>The environment version after the change.</summary>
        public long Version { get; }

        internal FlagChangeEventArgs(IReadOnlyList<string> keys, long version)
        {
            FlagKeys = keys;
            Version = version;
        }
    }
}
