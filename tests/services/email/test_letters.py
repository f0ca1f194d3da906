"""What an e-mail says: from the alert's CAP document, or from the stream's text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.alerting import cap
from services.email.letters import SUBJECT_CHARS, from_cap, from_text

SENT = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def _document() -> str:
    infos = tuple(
        cap.CapInfo(
            language=lang,
            category="Met",
            event="Flood",
            urgency="Expected",
            severity="Severe",
            certainty="Likely",
            expires=SENT + timedelta(hours=2),
            sender_name="Ville de Namur",
            headline=headline,
            description=description,
            instruction=instruction,
            area_desc="Namur - Jambes",
        )
        for lang, headline, description, instruction in (
            (
                "fr",
                "EXERCICE - Crue de la Meuse",
                "La Meuse déborde à Jambes.",
                "Montez à l'étage.",
            ),
            ("nl", "OEFENING - Maas treedt buiten haar oevers", "", "Ga naar boven."),
        )
    )
    return cap.render(
        cap.CapMessage(
            identifier="tocsin.a.1",
            sender=cap.SENDER,
            sent=SENT,
            status="Exercise",
            msg_type="Alert",
            infos=infos,
        )
    )


def test_the_cap_headline_is_the_subject_and_the_rest_paragraphs() -> None:
    fr = from_cap(_document(), language="fr")
    assert fr is not None
    assert fr.subject == "EXERCICE - Crue de la Meuse"
    assert fr.text == "La Meuse déborde à Jambes.\n\nMontez à l'étage.\n\n(Namur - Jambes)"
    nl = from_cap(_document(), language="nl")
    assert nl is not None
    assert nl.subject.startswith("OEFENING")
    assert nl.text == "Ga naar boven.\n\n(Namur - Jambes)"
    # A language the document lacks gets the first one.
    de = from_cap(_document(), language="de")
    assert de is not None
    assert de.subject == fr.subject


def test_a_text_alone_gives_a_subject_cut_at_a_word() -> None:
    short = from_text("TEST - Stay indoors.")
    assert (short.subject, short.text) == ("TEST - Stay indoors.", "TEST - Stay indoors.")
    long = from_text("TEST - " + "Stay indoors and close every window now please " * 5)
    assert len(long.subject) <= SUBJECT_CHARS
    assert long.subject.endswith("…")
    assert long.text.startswith(long.subject[:-1])
