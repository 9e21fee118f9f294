// Package openfeature is Vexil as a provider of OpenFeature's Go SDK
// (github.com/open-feature/go-sdk), over the Vexil Go client. Already on OpenFeature? One
// line changes:
//
//	provider, err := vexilof.New(ctx, "vxl-server-…", vexil.WithEndpoint("http://127.0.0.1:50051"))
//	err = openfeature.SetProviderAndWait(provider)
//
// Each call's evaluation context becomes a Vexil context, evaluated in this process (a
// server key): the targeting key is the key, the attribute "kind" the kind ("user" by
// default), other attributes attributes (time.Time as RFC 3339). A multi-kind context is the
// attribute kind="multi" with one map[string]any per kind, each with its "targetingKey".
// Reasons are OpenFeature's (TARGETING_MATCH, DEFAULT, SPLIT in an experiment, DISABLED;
// CACHED and STALE for values not fresh from the server), with Vexil's own in the flag
// metadata. The client's changes and status become the provider's events.
package openfeature

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"

	vexil "github.com/vexil-flags/vexil/sdk-go"
)

// DefaultInitTimeout bounds Init unless WithInitTimeout says otherwise.
const DefaultInitTimeout = 5 * time.Second

// statusInterval is how often the provider looks at the client's status to announce STALE
// and READY.
const statusInterval = 250 * time.Millisecond

// Provider is a Vexil client as an OpenFeature provider. It implements FeatureProvider,
// StateHandler, EventHandler and Tracker.
type Provider struct {
	client      *vexil.Client
	initTimeout time.Duration
	events      chan of.Event
	stop        chan struct{}
	stopOnce    sync.Once
	done        sync.WaitGroup
	initialized atomic.Bool
}

var (
	_ of.FeatureProvider = (*Provider)(nil)
	_ of.StateHandler    = (*Provider)(nil)
	_ of.EventHandler    = (*Provider)(nil)
	_ of.Tracker         = (*Provider)(nil)
)

// New creates a client (see vexil.NewClient) and a provider over it.
func New(ctx context.Context, sdkKey string, options ...vexil.Option) (*Provider, error) {
	client, err := vexil.NewClient(ctx, sdkKey, options...)
	if err != nil {
		return nil, err
	}
	return NewFromClient(client), nil
}

// NewFromClient is a provider over a client made elsewhere; Shutdown closes it.
func NewFromClient(client *vexil.Client) *Provider {
	return &Provider{
		client:      client,
		initTimeout: DefaultInitTimeout,
		events:      make(chan of.Event, 16),
		stop:        make(chan struct{}),
	}
}

// WithInitTimeout sets how long Init waits for the first data.
func (p *Provider) WithInitTimeout(timeout time.Duration) *Provider {
	p.initTimeout = timeout
	return p
}

// Client is the client underneath, for what OpenFeature has no word for (Flush, AllFlags).
func (p *Provider) Client() *vexil.Client { return p.client }

// Metadata names the provider.
func (p *Provider) Metadata() of.Metadata { return of.Metadata{Name: "Vexil"} }

// Hooks: none.
func (p *Provider) Hooks() []of.Hook { return nil }

// Init waits for the first data (or the cache's, or bootstrap), then starts announcing
// changes and status.
func (p *Provider) Init(of.EvaluationContext) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.initTimeout)
	defer cancel()
	status, err := p.client.WaitForInitialization(ctx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if status == vexil.StatusFailed {
		return fmt.Errorf("vexil: %s", p.reason("the SDK key was refused"))
	}
	if status == vexil.StatusInitializing {
		if state, err := p.client.State(); err == nil && state.Source == "DEFAULTS" {
			return fmt.Errorf("vexil: no flag data within %s", p.initTimeout)
		}
	}
	subscription, err := p.client.Subscribe()
	if err != nil {
		return err
	}
	p.initialized.Store(true)
	p.done.Add(2)
	go p.forwardChanges(subscription)
	go p.watchStatus(status)
	return nil
}

func (p *Provider) reason(fallback string) string {
	if state, err := p.client.State(); err == nil && state.Reason != nil {
		return *state.Reason
	}
	return fallback
}

func (p *Provider) emit(event of.Event) {
	event.ProviderName = "Vexil"
	select {
	case p.events <- event:
	case <-p.stop:
	}
}

func (p *Provider) forwardChanges(subscription *vexil.Subscription) {
	defer p.done.Done()
	defer subscription.Close()
	for {
		select {
		case change, open := <-subscription.C:
			if !open {
				return
			}
			p.emit(of.Event{EventType: of.ProviderConfigChange,
				ProviderEventDetails: of.ProviderEventDetails{FlagChanges: change.FlagKeys}})
		case <-p.stop:
			return
		}
	}
}

func (p *Provider) watchStatus(previous vexil.Status) {
	defer p.done.Done()
	ticker := time.NewTicker(statusInterval)
	defer ticker.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-ticker.C:
		}
		status := p.client.Status()
		if status == previous {
			continue
		}
		switch status {
		case vexil.StatusStale:
			p.emit(of.Event{EventType: of.ProviderStale,
				ProviderEventDetails: of.ProviderEventDetails{Message: p.reason("connection lost")}})
		case vexil.StatusFailed:
			p.emit(of.Event{EventType: of.ProviderError,
				ProviderEventDetails: of.ProviderEventDetails{Message: p.reason("the SDK key was refused"), ErrorCode: of.GeneralCode}})
		case vexil.StatusReady:
			p.emit(of.Event{EventType: of.ProviderReady})
		}
		previous = status
	}
}

// Shutdown stops the events, flushes and closes the client.
func (p *Provider) Shutdown() {
	p.stopOnce.Do(func() {
		close(p.stop)
		p.done.Wait()
		_ = p.client.Close()
	})
}

// EventChannel delivers the provider's events: configuration changes with the flags
// changed, STALE, READY (back) and ERROR (key refused).
func (p *Provider) EventChannel() <-chan of.Event { return p.events }

// Track sends a Vexil track event for the evaluation context, with the details' value.
func (p *Provider) Track(_ context.Context, name string, evalCtx of.EvaluationContext, details of.TrackingEventDetails) {
	flat := of.FlattenedContext{}
	for name, value := range evalCtx.Attributes() {
		flat[name] = value
	}
	if key := evalCtx.TargetingKey(); key != "" {
		flat[of.TargetingKey] = key
	}
	contextJSON, resolution := ContextJSON(flat)
	if resolution != nil {
		return
	}
	vexilContext, err := vexil.ParseContext(contextJSON)
	if err != nil {
		return
	}
	defer vexilContext.Close()
	value := details.Value()
	_ = p.client.Track(name, vexilContext, &value)
}

// ContextJSON is Vexil's context (canonical JSON) for an OpenFeature flattened context, or
// the resolution error that says why there is none (TARGETING_KEY_MISSING, INVALID_CONTEXT).
func ContextJSON(flat of.FlattenedContext) ([]byte, *of.ResolutionError) {
	var context map[string]any
	if kind, _ := flat["kind"].(string); kind == "multi" {
		var contexts []map[string]any
		for name, value := range flat {
			if name == "kind" || name == of.TargetingKey {
				continue
			}
			fields, ok := value.(map[string]any)
			if !ok {
				err := of.NewInvalidContextResolutionError(fmt.Sprintf(
					"context.%s: each kind of a multi-kind context is a map[string]any with its targetingKey", name))
				return nil, &err
			}
			single, err := singleKind(fields, "context."+name)
			if err != nil {
				return nil, err
			}
			single["kind"] = name
			contexts = append(contexts, single)
		}
		context = map[string]any{"kind": "multi", "contexts": contexts}
	} else {
		single, err := singleKind(flat, "context")
		if err != nil {
			return nil, err
		}
		context = single
	}
	raw, err := json.Marshal(jsonValue(context))
	if err != nil {
		resolution := of.NewInvalidContextResolutionError(err.Error())
		return nil, &resolution
	}
	return raw, nil
}

func singleKind(fields map[string]any, path string) (map[string]any, *of.ResolutionError) {
	keyField := of.TargetingKey
	if _, has := fields[keyField]; !has {
		keyField = "key"
	}
	key, _ := fields[keyField].(string)
	if key == "" {
		err := of.NewTargetingKeyMissingResolutionError(path + ".targetingKey: required, the context's key")
		return nil, &err
	}
	attributes := map[string]any{}
	for name, value := range fields {
		if name != keyField && name != "kind" {
			attributes[name] = value
		}
	}
	out := map[string]any{"key": key, "attributes": attributes}
	if kind, has := fields["kind"]; has {
		out["kind"] = kind
	}
	return out, nil
}

// jsonValue turns the values OpenFeature contexts hold into JSON ones: times as RFC 3339.
func jsonValue(value any) any {
	switch v := value.(type) {
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case map[string]any:
		out := make(map[string]any, len(v))
		for name, item := range v {
			out[name] = jsonValue(item)
		}
		return out
	case []map[string]any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = jsonValue(item)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = jsonValue(item)
		}
		return out
	default:
		return value
	}
}

var errorCodes = map[string]func(string) of.ResolutionError{
	"FLAG_NOT_FOUND":   of.NewFlagNotFoundResolutionError,
	"WRONG_TYPE":       of.NewTypeMismatchResolutionError,
	"MALFORMED_FLAG":   func(m string) of.ResolutionError { return of.NewParseErrorResolutionError(m) },
	"INVALID_CONTEXT":  of.NewInvalidContextResolutionError,
	"CLIENT_NOT_READY": of.NewProviderNotReadyResolutionError,
}

// resolve evaluates flag as kind; the detail's value is JSON (the default's, on an error).
func (p *Provider) resolve(flag string, flat of.FlattenedContext, kind vexil.Kind, def any) (json.RawMessage, of.ProviderResolutionDetail) {
	failed := func(err of.ResolutionError) (json.RawMessage, of.ProviderResolutionDetail) {
		return nil, of.ProviderResolutionDetail{ResolutionError: err, Reason: of.ErrorReason}
	}
	contextJSON, resolution := ContextJSON(flat)
	if resolution != nil {
		return failed(*resolution)
	}
	defJSON, err := json.Marshal(def)
	if err != nil {
		return failed(of.NewGeneralResolutionError(err.Error()))
	}
	detail, err := p.client.DetailForJSONContext(flag, contextJSON, kind, defJSON)
	if err != nil {
		return failed(of.NewGeneralResolutionError(err.Error()))
	}
	metadata := of.FlagMetadata{
		"vexilReason":  detail.Reason.Kind,
		"inExperiment": detail.InExperiment,
		"flagVersion":  detail.FlagVersion,
		"source":       detail.Source,
	}
	if detail.Reason.RuleIndex != nil {
		metadata["ruleIndex"] = *detail.Reason.RuleIndex
	}
	if detail.Reason.RuleID != "" {
		metadata["ruleId"] = detail.Reason.RuleID
	}
	if detail.Reason.PrerequisiteKey != "" {
		metadata["prerequisiteKey"] = detail.Reason.PrerequisiteKey
	}
	if detail.ExperimentKey != "" {
		metadata["experimentKey"] = detail.ExperimentKey
	}
	if detail.Reason.Kind == "ERROR" {
		code, known := errorCodes[detail.Reason.ErrorKind]
		if !known {
			code = func(m string) of.ResolutionError { return of.NewGeneralResolutionError(m) }
		}
		return nil, of.ProviderResolutionDetail{ResolutionError: code(detail.Reason.ErrorKind), Reason: of.ErrorReason, FlagMetadata: metadata}
	}
	var reason of.Reason
	switch {
	case detail.Source == "CACHE":
		reason = of.CachedReason
	case detail.Source == "STALE":
		reason = of.Reason("STALE")
	case detail.Reason.Kind == "TARGET_MATCH" || detail.Reason.Kind == "RULE_MATCH":
		reason = of.TargetingMatchReason
	case detail.Reason.Kind == "FALLTHROUGH" && detail.InExperiment:
		reason = of.SplitReason
	case detail.Reason.Kind == "FALLTHROUGH":
		reason = of.DefaultReason
	default:
		reason = of.DisabledReason
	}
	out := of.ProviderResolutionDetail{Reason: reason, FlagMetadata: metadata}
	if detail.Variation != nil {
		out.Variant = strconv.Itoa(*detail.Variation)
	}
	return detail.Value, out
}

func mismatch(why string) of.ProviderResolutionDetail {
	return of.ProviderResolutionDetail{ResolutionError: of.NewTypeMismatchResolutionError(why), Reason: of.ErrorReason}
}

// decode resolves a flag and reads its JSON value into value (which keeps what it holds where
// the JSON is null); ok is false when the resolution failed or the value does not read as a
// T, and the detail then says why (TYPE_MISMATCH with why for the latter).
func decode[T any](p *Provider, flag string, flat of.FlattenedContext, kind vexil.Kind, def any, value T, why string) (T, of.ProviderResolutionDetail, bool) {
	raw, detail := p.resolve(flag, flat, kind, def)
	if detail.Error() != nil {
		return value, detail, false
	}
	if json.Unmarshal(raw, &value) != nil {
		return value, mismatch(why), false
	}
	return value, detail, true
}

// resolveAs resolves a flag whose JSON value reads as a T: the value, or the default (with
// the detail saying why).
func resolveAs[T any](p *Provider, flag string, flat of.FlattenedContext, kind vexil.Kind, def T, why string) (T, of.ProviderResolutionDetail) {
	value, detail, ok := decode(p, flag, flat, kind, def, def, why)
	if !ok {
		return def, detail
	}
	return value, detail
}

// BooleanEvaluation resolves a bool flag.
func (p *Provider) BooleanEvaluation(_ context.Context, flag string, def bool, flat of.FlattenedContext) of.BoolResolutionDetail {
	value, detail := resolveAs(p, flag, flat, vexil.KindBool, def, "not a boolean")
	return of.BoolResolutionDetail{Value: value, ProviderResolutionDetail: detail}
}

// StringEvaluation resolves a string flag.
func (p *Provider) StringEvaluation(_ context.Context, flag string, def string, flat of.FlattenedContext) of.StringResolutionDetail {
	value, detail := resolveAs(p, flag, flat, vexil.KindString, def, "not a string")
	return of.StringResolutionDetail{Value: value, ProviderResolutionDetail: detail}
}

// FloatEvaluation resolves a number flag.
func (p *Provider) FloatEvaluation(_ context.Context, flag string, def float64, flat of.FlattenedContext) of.FloatResolutionDetail {
	value, detail := resolveAs(p, flag, flat, vexil.KindNumber, def, "not a number")
	return of.FloatResolutionDetail{Value: value, ProviderResolutionDetail: detail}
}

// IntEvaluation resolves a number flag whose value is whole (else TYPE_MISMATCH).
func (p *Provider) IntEvaluation(_ context.Context, flag string, def int64, flat of.FlattenedContext) of.IntResolutionDetail {
	number, detail, ok := decode(p, flag, flat, vexil.KindNumber, def, float64(0), "not a number")
	if !ok {
		return of.IntResolutionDetail{Value: def, ProviderResolutionDetail: detail}
	}
	if number != math.Trunc(number) || math.Abs(number) > 9e15 {
		return of.IntResolutionDetail{Value: def, ProviderResolutionDetail: mismatch(fmt.Sprintf("%v is not a whole number", number))}
	}
	return of.IntResolutionDetail{Value: int64(number), ProviderResolutionDetail: detail}
}

// ObjectEvaluation resolves a flag of any kind as its JSON value (maps, slices, strings…).
func (p *Provider) ObjectEvaluation(_ context.Context, flag string, def any, flat of.FlattenedContext) of.InterfaceResolutionDetail {
	value, detail, ok := decode[any](p, flag, flat, vexil.KindJSON, def, nil, "not JSON")
	if !ok {
		return of.InterfaceResolutionDetail{Value: def, ProviderResolutionDetail: detail}
	}
	return of.InterfaceResolutionDetail{Value: value, ProviderResolutionDetail: detail}
}
