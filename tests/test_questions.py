"""Per-channel questions: the documented JSON shape, its validation, labels and answers."""

from __future__ import annotations

import json

import pytest

from dropbox.questions import MAX_QUESTIONS, InvalidQuestions, Question, answers_for, parse_questions

EXAMPLE = [
    {"id": "department", "label": {"en": "Which department?", "da": "Hvilken afdeling?", "sv": "Vilken avdelning?"},
     "required": False, "kind": "text"},
    {"id": "when", "label": "When did it happen?", "required": True, "kind": "textarea"},
    {"id": "who_2"},
]


def test_the_documented_example_parses() -> None:
    questions = parse_questions(json.dumps(EXAMPLE[:2]))
    assert [(q.id, q.required, q.kind, q.field_name) for q in questions] == [
        ("department", False, "text", "answer_department"),
        ("when", True, "textarea", "answer_when"),
    ]


@pytest.mark.parametrize("text", ["", "[]"])
def test_no_questions(text: str) -> None:
    assert parse_questions(text) == []


@pytest.mark.parametrize(
    ("lang", "default", "label"),
    [("da", "en", "Hvilken afdeling?"), ("sv", "da", "Vilken avdelning?"), ("de", "da", "Hvilken afdeling?"),
     ("de", "fr", "Which department?")],
)
def test_a_label_falls_back_to_the_default_language_then_english(lang: str, default: str, label: str) -> None:
    (question,) = parse_questions(json.dumps(EXAMPLE[:1]))
    assert question.label(lang, default) == label


def test_a_plain_string_label_is_used_in_every_language_and_the_first_label_is_the_last_resort() -> None:
    plain, only_sv = parse_questions(json.dumps([EXAMPLE[1], {"id": "x", "label": {"sv": "Bara svenska"}}]))
    assert {plain.label(lang, "en") for lang in ("en", "da", "sv")} == {"When did it happen?"}
    assert only_sv.label("da", "en") == "Bara svenska"


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        '{"id": "x"}',
        "[1]",
        '[{"id": "Bad Id", "label": "x"}]',
        '[{"id": "' + "x" * 41 + '", "label": "x"}]',
        '[{"id": "x"}]',
        '[{"id": "x", "label": ""}]',
        '[{"id": "x", "label": {}}]',
        '[{"id": "x", "label": {"english": "x"}}]',
        '[{"id": "x", "label": {"en": 5}}]',
        '[{"id": "x", "label": "' + "x" * 501 + '"}]',
        '[{"id": "x", "label": "x", "required": "yes"}]',
        '[{"id": "x", "label": "x", "kind": "select"}]',
        '[{"id": "x", "label": "x", "colour": "red"}]',
        '[{"id": "x", "label": "x"}, {"id": "x", "label": "y"}]',
        json.dumps([{"id": f"q{i}", "label": "x"} for i in range(MAX_QUESTIONS + 1)]),
    ],
)
def test_anything_else_is_refused_with_a_reason(value: str) -> None:
    with pytest.raises(InvalidQuestions) as raised:
        parse_questions(value)
    assert str(raised.value)


def test_answers_keep_only_this_channels_questions_and_report_missing_required_ones() -> None:
    questions = [Question(id="a", labels={"": "A"}), Question(id="b", labels={"": "B"}, required=True),
                 Question(id="c", labels={"": "C"}, required=True)]
    fields = {"answer_a": "  yes ", "answer_b": "   ", "answer_zzz": "not a question here", "text": "x"}
    answers, missing = answers_for(questions, fields)
    assert answers == {"a": "yes"}
    assert [q.id for q in missing] == ["b", "c"]
