"""The empty chat says what each model is: in the page a new chat serves, one line per
model the person may pick, the current one shown, in the reader's language."""

from __future__ import annotations

import re

from django.test import Client

from billing.models import CatalogModel, Provider

BUILT_IN = (
    "A small model that runs on this computer: fast, not wise — set ANTHROPIC_API_KEY "
    "for claude-4-6."
)
CLAUDE = "A state-of-the-art text model for high-performance applications"


def empty_models(client: Client) -> dict[str, str]:
    """Each model's block in the empty chat: its slug, and whether it is hidden."""
    page = client.get("/").content.decode()
    assert 'id="empty-chat"' in page
    return {
        slug: "hidden" if hidden else "shown"
        for slug, hidden in re.findall(r'class="empty-model" data-model="([^"]+)"( hidden)?', page)
    }


def test_a_new_chat_describes_each_model_and_shows_the_current_one(alice):
    client = Client()
    client.force_login(alice)
    assert empty_models(client) == {"claude-4-6": "shown", "smollm2-135m": "hidden"}
    page = client.get("/").content.decode()
    assert BUILT_IN in page and CLAUDE in page
    assert page.count('class="suggestion"') == 3


def test_other_models_get_a_line_that_promises_nothing(alice, settings):
    CatalogModel.objects.create(
        slug="llama-3-8b",
        display_name="Llama 3 8B",
        provider=Provider.OPENAI,
        context_window=8192,
        max_output_tokens=1024,
        input_price_per_1k_micros=0,
        output_price_per_1k_micros=0,
    )
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LOCAL_MODEL_PATH = "/models/other.gguf"  # not the built-in model any more
    client = Client()
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "A model your administrator has set up for this chat." in page
    assert "A model that runs on this computer, with no network." in page
    assert BUILT_IN not in page


def test_the_empty_chat_reads_french(alice):
    client = Client(headers={"accept-language": "fr"})
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "Un petit modèle qui tourne sur cet ordinateur : rapide, pas savant" in page
    assert "Écris un poème de quatre vers sur la mer." in page
