"""Who read which conversation, and why: support reads conversation text only with a
recorded reason, and every reading is kept here for admins."""

from __future__ import annotations

from django.conf import settings
from django.db import models

ADMIN_GROUP = "Admin"
SUPPORT_GROUP = "Support"


class AuditLog(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="audit_entries"
    )
    action = models.CharField(max_length=40, default="read_conversation")
    conversation_id = models.UUIDField()
    # Whose conversation it was (kept even if the conversation is deleted later).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="audited_conversations",
    )
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        permissions = [
            ("view_dashboard", "Can view the support dashboard"),
            ("read_with_reason", "Can read a conversation's text after recording a reason"),
        ]

    def __str__(self) -> str:
        return f"{self.actor} read {self.conversation_id} at {self.created_at:%Y-%m-%d %H:%M}"
