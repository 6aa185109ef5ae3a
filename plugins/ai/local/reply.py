"""``draft_reply``: a short, polite, plain-text draft for the last customer turn.

At most ``_REPLY_CHARS`` characters: it thanks the customer, says sorry when
the message is negative, names the topic from the classification's category,
quotes nothing it was not told, and promises that a teammate follows up. It
never invents facts: no dates, refunds, prices or names. English only.
"""

from __future__ import annotations

from plugins.ai.local.classification import DEFAULT_CATEGORIES, classify
from plugins.ai.local.reading import MAX_HUMAN, clean
from plugins.ai.local.summary import first_sentence, one_line
from plugins.ai.spec import EventInput, Turn

_REPLY_CHARS = 600
_QUOTE_CHARS = 140
_TOPICS = {
    "billing": "your billing question",
    "code": "the technical issue you reported",
    "support": "your request",
    "sales": "your interest in our plans",
    "alert": "the service problem you are seeing",
    "other": "your message",
}
_EMPTY = ("Hi,\n\nThank you for getting in touch. A member of our team will look into this and get back to "
          "you shortly.\n\nBest regards")
_REPLY = ("Hi,\n\n{opening} We have received {topic}: \"{quote}\" "
          "A member of our team will look into it and get back to you{soon}.\n\nBest regards")


def draft_reply(turns: tuple[Turn, ...], event: EventInput | None = None,
                categories: tuple[str, ...] = DEFAULT_CATEGORIES) -> str:
    """A short, polite reply to the last customer turn that promises a follow-up and invents nothing."""
    last = next((t.text for t in reversed(turns) if t.role == "customer" and t.text.strip()), "")
    if not last and event is not None:
        last = event.text
    last = clean(last[:MAX_HUMAN])
    if not last:
        return _EMPTY
    source, event_type, payload = ("", "", None) if event is None else (event.source_type, event.event_type,
                                                                       event.payload)
    about = classify(EventInput(event.tenant_id if event else "", source, event_type, payload if payload else {},
                                last), categories)
    category = about["category"]
    topic = _TOPICS.get(category, f"your message about {category}" if category else "your message")
    opening = "Thank you for your message, and sorry for the trouble." if about["sentiment"] == "negative" \
        else "Thank you for your message."
    soon = " as soon as possible" if about["priority"] in ("high", "urgent") else " shortly"
    quote = first_sentence(last)
    body = _REPLY.format(opening=opening, topic=topic, quote=one_line(quote, _QUOTE_CHARS), soon=soon)
    if len(body) > _REPLY_CHARS:  # only the quote is long: shorten it
        limit = max(20, _QUOTE_CHARS - (len(body) - _REPLY_CHARS))
        body = _REPLY.format(opening=opening, topic=topic, quote=one_line(quote, limit), soon=soon)
    return body[:_REPLY_CHARS]
