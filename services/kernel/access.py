"""Who may call what: every RPC's allowed callers, by service identity, in this one table.

A caller's identity is the name in its client certificate (mutual TLS, `services.kernel.tls`).
A method's rule is found by its full name, then by its service (`/pkg.Service/*`), then by its
package (`/pkg.*`); a method with no rule is refused (deny by default). Identities ending in
`*` match by prefix: `api-*` is any platform team's SMS API credential.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Anyone who reached the server over TLS: alerting's public API (its callers prove who they
#: are with a JWT, checked by alerting's gate) and health probes.
ANYONE = "*"
#: Any holder of a certificate of the CA, whatever its service.
ANY_SERVICE = "**"
#: Platform teams' direct use of the SMS API: each team's own client certificate, named api-*.
API_CLIENTS = "api-*"

ALERTING = "alerting"

#: full method, `/package.Service/*` or `/package.*` -> identities allowed to call it.
RULES: Mapping[str, frozenset[str]] = {
    # Health and reflection (the API's shape only) answer whoever completed the handshake:
    # on a mutual-TLS server, any holder of a certificate of the CA.
    "/grpc.health.v1.Health/*": frozenset({ANYONE}),
    "/grpc.reflection.*": frozenset({ANYONE}),
    # Alerting: public, users authenticate with their JWT.
    "/tocsin.alerting.*": frozenset({ANYONE}),
    # Targeting: only alerting resolves, previews and reads zones; citizens' registrations come
    # through the registration front end only.
    "/tocsin.targeting.v1.Targeting/Resolve": frozenset({ALERTING}),
    "/tocsin.targeting.v1.Targeting/Preview": frozenset({ALERTING}),
    "/tocsin.targeting.v1.Targeting/CellsForZone": frozenset({ALERTING, "cellbroadcast"}),
    "/tocsin.targeting.v1.Targeting/ValidateZone": frozenset({ALERTING}),
    "/tocsin.targeting.v1.Targeting/RegisterSubscriber": frozenset({"registration"}),
    "/tocsin.targeting.v1.Targeting/UpdateSubscriber": frozenset({"registration"}),
    "/tocsin.targeting.v1.Targeting/RemoveSubscriber": frozenset({"registration"}),
    # SMS: alerting reads an alert's progress; platform teams send with their own credentials
    # (sender allow-list, quotas, audit: services/sms/api.py) and read their own batches only.
    "/tocsin.sms.v1.SmsService/GetAlertProgress": frozenset({ALERTING}),
    "/tocsin.sms.v1.SmsService/SendSms": frozenset({API_CLIENTS}),
    "/tocsin.sms.v1.SmsService/SendBatch": frozenset({API_CLIENTS}),
    "/tocsin.sms.v1.SmsService/GetBatch": frozenset({API_CLIENTS}),
    "/tocsin.sms.v1.SmsService/GetMessage": frozenset({API_CLIENTS}),
    # Voice: alerting, and platform teams with their own credentials (their own calls only).
    "/tocsin.voice.v1.VoiceService/PlaceCalls": frozenset({ALERTING, API_CLIENTS}),
    "/tocsin.voice.v1.VoiceService/GetCall": frozenset({ALERTING, API_CLIENTS}),
    # Every other channel (voice, cell broadcast, e-mail, CAP feed, and channels to come) is
    # driven by alerting only, unless a rule above says otherwise.
    "/tocsin.*": frozenset({ALERTING}),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """The callers one method accepts."""

    #: Identities allowed by exact name.
    names: frozenset[str]
    #: Identity prefixes allowed (from `prefix*` entries).
    prefixes: tuple[str, ...]
    #: Anyone, with or without a certificate.
    anyone: bool
    #: Anyone with a certificate from the CA.
    any_identity: bool

    def admits(self, identities: Iterable[str]) -> str | None:
        """The identity that may call (\"\" for an anonymous caller admitted), or None."""
        for identity in identities:
            if (
                self.any_identity
                or identity in self.names
                or any(identity.startswith(p) for p in self.prefixes)
            ):
                return identity
        return "" if self.anyone else None


def _rule(entries: frozenset[str]) -> Rule:
    return Rule(
        names=frozenset(e for e in entries if not e.endswith("*")),
        prefixes=tuple(
            e[:-1] for e in entries if e.endswith("*") and e not in (ANYONE, ANY_SERVICE)
        ),
        anyone=ANYONE in entries,
        any_identity=ANY_SERVICE in entries,
    )


#: Refuses every caller.
DENY = Rule(frozenset(), (), anyone=False, any_identity=False)


def rule_for(method: str, rules: Mapping[str, frozenset[str]] = RULES) -> Rule:
    """The rule of a full method name (`/pkg.Service/Method`); DENY when nothing matches."""
    service = method.rsplit("/", 1)[0]
    entries = rules.get(method) or rules.get(f"{service}/*")
    package = service.lstrip("/")
    while entries is None and "." in package:
        package = package.rsplit(".", 1)[0]
        entries = rules.get(f"/{package}.*")
    return DENY if entries is None else _rule(entries)
