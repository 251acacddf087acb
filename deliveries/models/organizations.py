"""Who calls us: LimaCharlie organisations, the Twilio credentials their calls bring, the `run` calls
accepted (the replay defence), and the error reports LimaCharlie sends."""

from __future__ import annotations

from django.db import models

from deliveries.fields import EncryptedTextField


class Organization(models.Model):
    """A LimaCharlie organisation that subscribed to the extension."""

    class Subscription(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"  # seen in a request before any subscribe event
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    oid = models.CharField("LimaCharlie org id", max_length=64, unique=True)
    # The name LimaCharlie gives it (read at subscribe and update), and the desk's own label, which
    # wins where both exist: people know "Acme SOC", not a UUID.
    name = models.CharField(max_length=200, blank=True)
    label = models.CharField(max_length=200, blank=True)
    subscription = models.CharField(max_length=16, choices=Subscription.choices, default=Subscription.UNKNOWN)
    subscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "organisation"

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """The label, else LimaCharlie's name, else the org id."""
        return self.label or self.name or self.oid


class CredentialQuerySet(models.QuerySet["Credential"]):
    def usable(self) -> CredentialQuerySet:
        """Credentials a message may be sent or checked with: the token is held (an erased token is
        stored as "", which EncryptedTextField leaves as is, so no decryption) and Twilio has not
        refused it."""
        return self.filter(rejected_at__isnull=True).exclude(auth_token="")

    def trusted(self) -> CredentialQuerySet:
        """Usable credentials the service read from the organisation's Secrets Manager with its JWT: the
        only ones that may vouch for a message a person sent (an inbound text). A credential pasted
        into a rule proves only that the rule's author holds some Twilio account."""
        return self.usable().filter(from_secrets_manager=True)


class Credential(models.Model):
    """A Twilio credential (Account SID and Auth Token) as a `run` call brought it from the
    organisation's Secrets Manager. Each delivery keeps the one it was accepted with: its send,
    retries, reconciliation, resends and the check of its status callbacks all use that one, never
    "the organisation's current" one, so two rules naming two secrets cannot cross their messages."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="credentials")
    account_sid = models.CharField(max_length=34)
    # Erased ("") when the organisation unsubscribes: it withdrew its consent to our holding it.
    auth_token = EncryptedTextField(blank=True)
    # Keyed hash of SID/TOKEN (never the token itself): finds the row a call's credential matches.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(help_text="When a run call last brought it (to the minute).")
    # Twilio refused it (20003): calls that bring it again read the Secrets Manager again.
    rejected_at = models.DateTimeField(null=True, blank=True)
    # Read from the organisation's Secrets Manager with a JWT at least once (rather than pasted inline
    # into a rule as ACCOUNT_SID/TOKEN). Only such a credential checks inbound texts: an inline one
    # sends its own call's messages and checks their callbacks, nothing else.
    from_secrets_manager = models.BooleanField(
        "read from the Secrets Manager",
        default=False,
        help_text="Read from the organisation's Secrets Manager (not pasted into a rule): may verify inbound texts.",
    )

    objects = CredentialQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "fingerprint"], name="credential_once_per_org"),
        ]
        indexes = [models.Index(fields=["account_sid"], name="credential_account")]

    def __str__(self) -> str:
        return f"{self.account_sid} ({self.organization_id})"

    @property
    def usable(self) -> bool:
        """The same test as `Credential.objects.usable()`, on a row in hand."""
        return bool(self.account_sid and self.auth_token) and self.rejected_at is None


class AlertRequest(models.Model):
    """One accepted `run` call. Its unique key is the durable replay defence: `lc-ext-sig` has no
    timestamp or nonce, so a captured request could be replayed forever without it."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="alert_requests")
    idempotency_key = models.CharField(max_length=255)
    reply = models.JSONField(help_text="The reply the first call got; a repeat gets it again.")
    # What the rule passed to be echoed in every event about this alert (an object or a string).
    context = models.JSONField(null=True, blank=True)
    # The event kinds the organisation's configuration chose when the call came; None: the default
    # (services.events).
    event_kinds = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "alert"
        constraints = [
            models.UniqueConstraint(fields=["organization", "idempotency_key"], name="alert_request_once_per_key"),
        ]

    def __str__(self) -> str:
        return f"run call {self.idempotency_key}"


class ErrorReport(models.Model):
    """An `error_report` LimaCharlie sent about this extension."""

    oid = models.CharField(max_length=64, blank=True)
    error = models.TextField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"error report from {self.oid or 'LimaCharlie'}"


class HandledCall(models.Model):
    """A state-changing LimaCharlie call other than `run` (an event, an error report), once per key.
    `lc-ext-sig` has no timestamp or nonce: without this, a captured `unsubscribe` could be replayed
    to erase an organisation's credential again. (`run` calls have AlertRequest.)"""

    oid = models.CharField(max_length=64, blank=True)
    message_type = models.CharField(max_length=32)
    idempotency_key = models.CharField(max_length=255)
    handled_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["oid", "message_type", "idempotency_key"], name="handled_call_once_per_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_type} call {self.idempotency_key}"
