"""Vexil as a provider of OpenFeature's Python SDK (`pip install "vexil-flags[openfeature]"`).

Already on OpenFeature? One line changes::

    from openfeature import api
    from vexil.openfeature import VexilProvider

    api.set_provider_and_wait(VexilProvider("vxl-server-...", endpoint="http://127.0.0.1:50051"))

Flags are evaluated in this process (a server key), for the context of each call: the
evaluation context's `targeting_key` is the key, the attribute `kind` the kind (`user` by
default), the other attributes are attributes; a multi-kind context is the attribute
`kind="multi"` with one mapping per kind, each with its `targetingKey`. Reasons are
OpenFeature's (`TARGETING_MATCH`, `DEFAULT`, `SPLIT` in an experiment, `DISABLED`; `CACHED` and
`STALE` for values not fresh from the server), with Vexil's own in the flag metadata.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from . import Client, ContextLike, EvaluationDetail, FlagChange

__all__ = ["VexilProvider", "to_vexil_context"]

_ERRORS = {
    "FLAG_NOT_FOUND": ErrorCode.FLAG_NOT_FOUND,
    "WRONG_TYPE": ErrorCode.TYPE_MISMATCH,
    "MALFORMED_FLAG": ErrorCode.PARSE_ERROR,
    "INVALID_CONTEXT": ErrorCode.INVALID_CONTEXT,
    "CLIENT_NOT_READY": ErrorCode.PROVIDER_NOT_READY,
}
# How often the provider looks at the client's status to announce STALE and READY.
_STATUS_INTERVAL = 0.25


def _json(value: Any) -> Any:
    """Context values as Vexil reads them: dates and times as RFC 3339 strings."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(name): _json(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value


def _single(fields: Mapping[str, Any], key: Optional[str], kind: Any) -> dict[str, Any]:
    key_field = "targetingKey" if "targetingKey" in fields else "key"
    if key is None:
        key = fields.get(key_field)
    attributes = {name: _json(value) for name, value in fields.items()
                  if name not in (key_field, "kind")}
    out: dict[str, Any] = {"key": key, "attributes": attributes}
    if kind is not None:
        out["kind"] = kind
    return out


def to_vexil_context(context: Optional[EvaluationContext]) -> Optional[dict[str, Any]]:
    """Vexil's context (the canonical JSON shape) for an OpenFeature evaluation context, or
    None when it has no key."""
    if context is None:
        return None
    attributes = dict(context.attributes)
    if attributes.get("kind") == "multi":
        contexts = [
            _single(fields if isinstance(fields, Mapping) else {}, None, kind)
            for kind, fields in attributes.items() if kind not in ("kind", "targetingKey")
        ]
        if not contexts or any(not c["key"] for c in contexts):
            return None
        return {"kind": "multi", "contexts": contexts}
    single = _single(attributes, context.targeting_key, attributes.get("kind"))
    return single if single["key"] else None


def _resolution(detail: EvaluationDetail, value: Any = None) -> FlagResolutionDetails[Any]:
    reason = detail.reason
    metadata: dict[str, Union[bool, int, float, str]] = {
        "vexilReason": detail.reason_kind,
        "inExperiment": detail.in_experiment,
        "flagVersion": detail.flag_version,
        "source": detail.source,
    }
    for field, name in (("rule_index", "ruleIndex"), ("rule_id", "ruleId"),
                        ("prerequisite_key", "prerequisiteKey")):
        if field in reason:
            metadata[name] = reason[field]
    if detail.experiment_key is not None:
        metadata["experimentKey"] = detail.experiment_key
    if detail.reason_kind == "ERROR":
        kind = detail.error_kind or "CLIENT_NOT_READY"
        return FlagResolutionDetails(value=detail.value, reason=Reason.ERROR,
                                     error_code=_ERRORS.get(kind, ErrorCode.GENERAL),
                                     error_message=kind, flag_metadata=metadata)
    if detail.source == "CACHE":
        resolved = Reason.CACHED
    elif detail.source == "STALE":
        resolved = Reason.STALE
    elif detail.reason_kind in ("TARGET_MATCH", "RULE_MATCH"):
        resolved = Reason.TARGETING_MATCH
    elif detail.reason_kind == "FALLTHROUGH":
        resolved = Reason.SPLIT if detail.in_experiment else Reason.DEFAULT
    else:
        resolved = Reason.DISABLED
    variant = None if detail.variation is None else str(detail.variation)
    return FlagResolutionDetails(value=detail.value if value is None else value, reason=resolved,
                                 variant=variant, flag_metadata=metadata)


def _mismatch(default: Any, why: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(value=default, reason=Reason.ERROR,
                                 error_code=ErrorCode.TYPE_MISMATCH, error_message=why)


class VexilProvider(AbstractProvider):
    """A `vexil.Client` as an OpenFeature provider; keyword arguments are the client's.

    Events: PROVIDER_CONFIGURATION_CHANGED with the flags changed, PROVIDER_STALE when the
    connection is lost (the last values keep being served), PROVIDER_READY when it is back,
    PROVIDER_ERROR when the key is refused. `track` sends a Vexil track event; `shutdown`
    flushes and closes the client (also reachable as `provider.client`).
    """

    def __init__(self, sdk_key: str, *, init_timeout: float = 5.0, **options: Any) -> None:
        super().__init__()
        self.client = Client(sdk_key, **options)
        self._init_timeout = init_timeout
        self._stopped = threading.Event()
        # Changes before initialization ends are the first data, not changes to announce.
        self._initialized = threading.Event()
        self._watcher: Optional[threading.Thread] = None
        self._listener = self.client.on_change(self._changed)

    def get_metadata(self) -> Metadata:
        return Metadata(name="Vexil")

    def get_provider_hooks(self) -> list[Hook]:
        return []

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        status = self.client.wait_for_initialization(self._init_timeout)
        if status.state == "FAILED":
            raise RuntimeError(f"vexil: {status.reason or 'the SDK key was refused'}")
        if not status.ready and self.client.source == "DEFAULTS":
            raise RuntimeError(f"vexil: no flag data within {self._init_timeout} s")
        self._initialized.set()
        self._watcher = threading.Thread(target=self._watch_status, name="vexil-openfeature",
                                         daemon=True)
        self._watcher.start()

    def shutdown(self) -> None:
        self._stopped.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        self.client.remove_listener(self._listener)
        self.client.close()

    def _changed(self, change: FlagChange) -> None:
        if not self._initialized.is_set():
            return
        self.emit_provider_configuration_changed(
            ProviderEventDetails(flags_changed=list(change.flag_keys)))

    def _watch_status(self) -> None:
        previous = self.client.status().state
        while not self._stopped.wait(_STATUS_INTERVAL):
            status = self.client.status()
            if status.state == previous:
                continue
            if status.state == "STALE":
                self.emit_provider_stale(ProviderEventDetails(message=status.reason))
            elif status.state == "FAILED":
                self.emit_provider_error(ProviderEventDetails(message=status.reason,
                                                              error_code=ErrorCode.GENERAL))
            elif status.state == "READY":
                self.emit_provider_ready(ProviderEventDetails())
            previous = status.state

    def _detail(self, flag_key: str, default: Any, context: Optional[EvaluationContext],
                kind: Literal["bool", "string", "number", "json"],
                ) -> Union[EvaluationDetail, FlagResolutionDetails[Any]]:
        vexil_context = to_vexil_context(context)
        if vexil_context is None:
            return FlagResolutionDetails(value=default, reason=Reason.ERROR,
                                         error_code=ErrorCode.TARGETING_KEY_MISSING,
                                         error_message="the evaluation context has no targeting key")
        context_like: ContextLike = vexil_context
        return self.client.variation_detail(flag_key, context_like, default, type=kind)

    def _resolve(self, flag_key: str, default: Any, context: Optional[EvaluationContext],
                 kind: Literal["bool", "string", "number", "json"],
                 served: Optional[Callable[[EvaluationDetail], FlagResolutionDetails[Any]]] = None,
                 ) -> FlagResolutionDetails[Any]:
        """The resolution of the flag; `served`, when given, makes that of a value the flag
        served (not an error): converted, or refused as a type mismatch."""
        detail = self._detail(flag_key, default, context, kind)
        if isinstance(detail, FlagResolutionDetails):
            return detail
        if served is not None and detail.reason_kind != "ERROR":
            return served(detail)
        return _resolution(detail)

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: Optional[EvaluationContext] = None,
                                ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "bool")

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: Optional[EvaluationContext] = None,
                               ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: Optional[EvaluationContext] = None,
                                ) -> FlagResolutionDetails[int]:
        def whole(detail: EvaluationDetail) -> FlagResolutionDetails[Any]:
            value = detail.value
            if isinstance(value, float) and not value.is_integer():
                return _mismatch(default_value, f"{value} is not a whole number")
            return _resolution(detail, int(value))
        return self._resolve(flag_key, default_value, evaluation_context, "number", whole)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: Optional[EvaluationContext] = None,
                              ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "number",
                             lambda detail: _resolution(detail, float(detail.value)))

    def resolve_object_details(
        self, flag_key: str,
        default_value: Union[Sequence[FlagValueType], Mapping[str, FlagValueType]],
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[Union[Sequence[FlagValueType], Mapping[str, FlagValueType]]]:
        def structure(detail: EvaluationDetail) -> FlagResolutionDetails[Any]:
            if not isinstance(detail.value, (dict, list)):
                return _mismatch(default_value, "the flag's value is not an object or a list")
            return _resolution(detail)
        return self._resolve(flag_key, default_value, evaluation_context, "json", structure)

    def track(self, tracking_event_name: str,
              evaluation_context: Optional[EvaluationContext] = None,
              tracking_event_details: Optional[TrackingEventDetails] = None) -> None:
        vexil_context = to_vexil_context(evaluation_context)
        if vexil_context is None:
            return
        value = tracking_event_details.value if tracking_event_details is not None else None
        self.client.track(tracking_event_name, vexil_context, value)
