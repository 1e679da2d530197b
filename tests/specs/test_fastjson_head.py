"""fastjson.loads_head: the members before `config` without parsing it (what `list` and
`state` read of each record), checked against json.loads on documents made to mislead a
cut at the text `, "config": `."""
import json

import pytest

from specs import fastjson

CONFIG = {"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "config": {"config": 1}}
DOCS = [
    {"id": "a", "pid": 1, "config": CONFIG},
    # the key nested before the real one, at depth 2 and 3
    {"id": "a", "annotations": {"x": 1, "config": {"y": 2}}, "config": CONFIG},
    {"id": "a", "cgroup": {"dirs": {"p": {"q": 1, "config": 2}}}, "pid": 3, "config": CONFIG},
    # the text inside strings, keys and values, with escapes and backslashes before quotes
    {"id": 'x, "config": {', "b\\": '\\", "config": ', 'k, "config": ': 1, "config": CONFIG},
    {"config": CONFIG},  # the only member: no ", " before it
    {"id": "a", "pid": 1},  # no config at all
    {"id": "ü \u2028", "config": [1, 2]},
]


@pytest.mark.parametrize("doc", DOCS)
def test_head_and_tail_are_what_json_reads(doc):
    text = fastjson.dumps(doc)
    head, s, at = fastjson.loads_head(text.encode(), "config")
    assert head == {k: v for k, v in doc.items() if k != "config"}
    if "config" in doc:
        assert at >= 0 and fastjson.loads_tail(s, at) == doc["config"]
    else:
        assert at == -1
    assert json.loads(text) == doc


@pytest.mark.parametrize("text", [
    '{"id": "a", "config": {}} x',  # data after the document
    '{"id": "a", "config": {}, "pid": 1}',  # config not last: the tail says so
    '{"id": "a", "config": {]}',
    '{"id": "a" "config": {}}',
    '{"id": "a"} x, "config": {}}',  # an object that closes before the cut
    '{"id": "a"}, "config": {}}',
])
def test_faults_are_still_found(text):
    with pytest.raises(ValueError):
        head, s, at = fastjson.loads_head(text, "config")
        fastjson.loads_tail(s, at)


def test_a_head_that_is_not_json_goes_the_careful_way():
    with pytest.raises(ValueError):
        fastjson.loads_head('{"id": tru, "config": {}}', "config")
