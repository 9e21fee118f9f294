package vexil

import (
	"log/slog"
	"time"
)

// Option sets up a client in NewClient.
type Option func(settings *settings) error

// settings are what the options set: the core's options (JSON) and the logger.
type settings struct {
	json map[string]any
	// logger receives the client's messages; nil with defaultLogger: slog.Default() at
	// each message.
	logger        *slog.Logger
	defaultLogger bool
	// testData, when set, stands in for the server (WithTestData).
	testData *TestData
}

// WithEndpoint sets the server's gRPC endpoint (default "http://127.0.0.1:50051").
func WithEndpoint(endpoint string) Option {
	return func(s *settings) error { s.json["endpoint"] = endpoint; return nil }
}

// WithCacheDir persists the last good data in dir and reads it at start.
func WithCacheDir(dir string) Option {
	return func(s *settings) error { s.json["cache_dir"] = dir; return nil }
}

// WithBootstrap serves the ruleset of a JSON file (the export format) until better data
// arrives.
func WithBootstrap(path string) Option {
	return func(s *settings) error { s.json["bootstrap"] = path; return nil }
}

// WithOffline(true) uses no network at all: cache, bootstrap or defaults.
func WithOffline(offline bool) Option {
	return func(s *settings) error { s.json["offline"] = offline; return nil }
}

// WithContext sets the first context of a remote-mode client (client and mobile keys).
func WithContext(context *Context) Option {
	return func(s *settings) error {
		s.json["context"] = rawJSON(context.json)
		return nil
	}
}

// WithMaxCacheAge reports data older than age as stale (default 7 days).
func WithMaxCacheAge(age time.Duration) Option { return millisOption("max_cache_age_ms", age) }

// WithConnectTimeout bounds each connection attempt (default 5 s).
func WithConnectTimeout(timeout time.Duration) Option {
	return millisOption("connect_timeout_ms", timeout)
}

// WithStreamTimeout reconnects a stream silent for this long (default 60 s).
func WithStreamTimeout(timeout time.Duration) Option {
	return millisOption("stream_timeout_ms", timeout)
}

// WithBackoff sets the reconnection delays: the first, doubling up to max (1 s and 30 s).
func WithBackoff(initial, maximum time.Duration) Option {
	return func(s *settings) error {
		if err := millisOption("initial_backoff_ms", initial)(s); err != nil {
			return err
		}
		return millisOption("max_backoff_ms", maximum)(s)
	}
}

// WithSDKInfo names the application's wrapper in syncs and event batches.
func WithSDKInfo(name, version string) Option {
	return func(s *settings) error { s.json["sdk_name"], s.json["sdk_version"] = name, version; return nil }
}

// WithLogger sends the client's messages to logger (default: slog.Default(), read at each
// message); nil sends them nowhere. A refused SDK key is logged at LevelError, a dropped
// event batch or an unreadable cache file at LevelWarn, status changes at LevelDebug; the
// logger's Enabled decides what the client even formats. An identical message is logged at
// most once a minute, the next one after that saying how many were left out.
func WithLogger(logger *slog.Logger) Option {
	return func(s *settings) error {
		s.logger, s.defaultLogger = logger, false
		return nil
	}
}

// Events sets up the event pipeline; zero fields keep their defaults.
type Events struct {
	// Disabled turns off exposures, track events and summaries.
	Disabled bool
	// Capacity: events held at most while waiting (default 10,000); more are dropped.
	Capacity int
	// BatchSize: events per batch at most (default 500).
	BatchSize int
	// FlushInterval: how often pending events are sent (default 5 s).
	FlushInterval time.Duration
	// ExposureWindow: an identical exposure within it is sent once (default 1 h).
	ExposureWindow time.Duration
	// NoSummaries turns off the evaluation counts per flag and variation.
	NoSummaries bool
	// PrivateAttributes: attributes events never carry, on every context (names, or JSON
	// Pointers into the attributes such as "/address/street"). Their values are removed
	// before an event is queued and their names listed in the context's
	// redacted_attributes; evaluation still reads them.
	PrivateAttributes []string
	// AllAttributesPrivate: events carry kinds and keys only.
	AllAttributesPrivate bool
}

// WithEvents sets up the event pipeline.
func WithEvents(events Events) Option {
	return func(s *settings) error {
		object := map[string]any{"enabled": !events.Disabled, "summaries": !events.NoSummaries}
		if events.Capacity < 0 || events.BatchSize < 0 || events.FlushInterval < 0 || events.ExposureWindow < 0 {
			return &Error{Code: CodeInvalidOptions, Message: "events: negative value"}
		}
		if events.Capacity > 0 {
			object["capacity"] = events.Capacity
		}
		if events.BatchSize > 0 {
			object["batch_size"] = events.BatchSize
		}
		if events.FlushInterval > 0 {
			object["flush_interval_ms"] = events.FlushInterval.Milliseconds()
		}
		if events.ExposureWindow > 0 {
			object["exposure_window_ms"] = events.ExposureWindow.Milliseconds()
		}
		if len(events.PrivateAttributes) > 0 {
			object["private_attributes"] = events.PrivateAttributes
		}
		object["all_attributes_private"] = events.AllAttributesPrivate
		s.json["events"] = object
		return nil
	}
}

func millisOption(field string, d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return &Error{Code: CodeInvalidOptions, Message: field + ": must not be negative"}
		}
		s.json[field] = d.Milliseconds()
		return nil
	}
}

// rawJSON embeds already-encoded JSON in the options.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
