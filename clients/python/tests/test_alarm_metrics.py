"""The alarm evaluation's metrics and the Python replica of the server's risk features and alarm rule
(issue 14); no server needed."""
import json

import numpy as np
from flowgate_client.alarms import auroc, consecutive, evaluate_condition, onsets
from flowgate_client.risk import alarm_states, stream_features, with_risk_section


# -- metrics (no server) ---------------------------------------------------------------------------

def test_auroc_counts_ties_as_half_and_orders():
    assert auroc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert auroc(np.array([1.0, np.nan, 0.0]), np.array([1, 1, 0])) == 1.0  # NaN dropped
    assert auroc(np.array([1.0]), np.array([1])) is None


def test_consecutive_and_onsets():
    x = np.array([1, 1, 0, 1, 1, 1, 1, 0], dtype=bool)
    assert consecutive(x, 3).tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    assert onsets(x).tolist() == [0, 3]


class _Args:
    horizon, lookback = 20, 100


def _episode(cond, length, fell, onset, reliable):
    return {"condition": cond, "length": length, "fell": fell, "onset": onset,
            "steps": {"reliable": np.asarray(reliable, dtype=bool), "confidence": np.ones(length),
                      "energy": np.zeros(length), "q": np.zeros(length)}}


def test_recall_lead_and_false_alarms():
    # a fall at step 100 (length 100) with the flag down from step 70: lead 30; alarms before the
    # onset (50) do not count; an undisturbed 1000-step episode with 2 alarm onsets: 2 per 1000
    rel = np.ones(100, dtype=bool)
    rel[10] = False
    rel[70:] = False
    fall = _episode("push", 100, True, 50, rel)
    clean_rel = np.ones(1000, dtype=bool)
    clean_rel[[5, 6, 500]] = False
    clean = _episode("none", 1000, False, -1, clean_rel)
    res = evaluate_condition([fall, clean], ["flag", "k3"], ["1-confidence"], _Args)
    assert res["rules"]["flag"]["recall"] == 1.0 and res["rules"]["flag"]["leads"] == [30]
    assert res["rules"]["flag"]["false_alarms_per_1000"] == 2.0
    assert res["rules"]["k3"]["leads"] == [28]
    assert res["rules"]["k3"]["false_alarms_per_1000"] == 0.0


def test_python_replica_of_the_alarm_rule_matches_the_server_definition():
    rule = {"on": 0.5, "k": 2, "n": 3, "off": 0.2, "clear_after": 2}
    risk = np.array([0.9, 0.0, 0.9, 0.3, 0.3, 0.0, 0.0, 0.9])
    assert alarm_states(risk, rule).tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    f = stream_features(np.array([10.0, 8.0, 9.0]), np.array([1.0, 1.0, 2.0]), rate=0.5)
    assert f["q_drop"].tolist() == [0.0, 2.0, 0.0]
    assert f["q_delta"].tolist() == [0.0, 2.0, -1.0]
    assert np.allclose(f["energy_trend"], [0, 0, 1])


def test_risk_section_is_the_manifests_last_key_and_replaced_in_place():
    text = '{\n  "name" : "m",\n  "sampling" : {\n    "steps" : 4\n  }\n}\n'
    once = with_risk_section(text, {"horizon": 20})
    assert once.startswith('{\n  "name" : "m",\n  "sampling" : {\n    "steps" : 4\n  },\n  "risk" : {')
    twice = with_risk_section(once, {"horizon": 30})
    assert '"horizon": 30' in twice and '"horizon": 20' not in twice
    assert twice.count('"risk"') == 1


def test_risk_section_in_the_middle_of_a_sorted_manifest_keeps_the_keys_after_it():
    # The trainer sorts keys, so a manifest it rewrote has risk before sampling and schemaVersion.
    # The first version cut the text at "risk" and lost both (a refined model then failed to load).
    text = ('{\n  "name" : "m",\n  "risk" : {\n    "horizon" : 20,\n    "alarm" : {\n      "on" : 0.5\n    }\n  },\n'
            '  "sampling" : {\n    "steps" : 4\n  },\n  "schemaVersion" : 1\n}\n')
    out = with_risk_section(text, {"horizon": 30})
    assert json.loads(out) == {"name": "m", "risk": {"horizon": 30}, "sampling": {"steps": 4}, "schemaVersion": 1}
    assert out.endswith('\n  },\n  "sampling" : {\n    "steps" : 4\n  },\n  "schemaVersion" : 1\n}\n')
    assert out.startswith('{\n  "name" : "m",\n  "risk" : {')




def test_a_fall_before_the_onset_is_scored_as_undisturbed():
    rel = np.ones(80, dtype=bool)
    rel[60:] = False
    early = _episode("push", 80, True, 200, rel)  # onset 200 never came: fell at 80
    res = evaluate_condition([early], ["flag"], [], _Args)
    assert res["rules"]["flag"]["recall"] == 1.0 and res["rules"]["flag"]["leads"] == [20]


def test_rescore_serves_a_q_only_section_and_keeps_the_recorded_values():
    from flowgate_client.risk import predict, rescore_episode
    section = {"horizon": 20, "trend_rate": 0.5,
               "stateless": {"features": ["q"], "mean": [10.0], "std": [2.0], "weights": [-1.0], "bias": -2.0},
               "stream": {"features": ["q", "q_drop", "q_delta"], "mean": [10.0, 0.0, 0.0], "std": [2.0, 1.0, 1.0],
                          "weights": [-1.0, 0.5, 0.1], "bias": -2.0},
               "alarm": {"on": 0.5, "k": 1, "n": 1, "off": 0.25, "clear_after": 2}}
    e = _episode("push", 4, True, 0, [True] * 4)
    e["steps"]["q"] = np.array([10.0, 10.0, 2.0, 2.0])
    e["steps"]["energy"] = np.array([np.nan, 5.0, -5.0, 100.0])  # ignored by a q-only section
    e["steps"]["x_risk"] = np.full(4, 0.7)
    out = rescore_episode(e, section)
    s = out["steps"]
    assert s["x_risk_recorded"].tolist() == [0.7] * 4 and e["steps"]["x_risk"].tolist() == [0.7] * 4
    z = -2.0 - (2.0 - 10.0) / 2.0 + 0.5 * 8.0 + 0.1 * 8.0  # step 2: q 2, q_drop 10 - 2, q_delta 10 - 2
    assert np.isclose(s["x_risk"][2], 1 / (1 + np.exp(-z)), atol=1e-6)
    assert s["x_alarm"].tolist() == [0, 0, 1, 1]
    assert np.allclose(s["x_risk_stateless"], predict(section["stateless"], {"q": e["steps"]["q"]}))
