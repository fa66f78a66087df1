"""BIDS Stats Models parsing, transformations and contrast matrices."""

import json

import numpy as np
import pandas as pd
import pytest

from glmflow.bids.stats_model import (
    default_model,
    event_variables,
    load_model,
    parse_model,
    run_contrasts,
    run_design_inputs,
)
from glmflow.core.errors import DesignError, EventsError, ModelFileError

MODEL = {
    "Name": "auditory",
    "BIDSModelVersion": "1.0.0",
    "Input": {"task": ["auditory"]},
    "Nodes": [
        {
            "Level": "Run",
            "Name": "run_level",
            "GroupBy": ["run", "subject"],
            "Transformations": {
                "Transformer": "pybids-transforms-v1",
                "Instructions": [
                    {"Name": "Factor", "Input": ["trial_type"]},
                    {"Name": "Convolve", "Input": ["trial_type.*"], "Model": "spm"},
                ],
            },
            "Model": {
                "Type": "glm",
                "X": ["trial_type.*", "trans_?", "rot_?", 1],
                "Options": {"HighPassFilterCutoffHz": 0.008},
            },
            "Contrasts": [
                {"Name": "a_vs_b", "ConditionList": ["trial_type.a", "trial_type.b"],
                 "Weights": [1, -1], "Test": "t"},
                {"Name": "effects", "ConditionList": ["trial_type.a", "trial_type.b"],
                 "Weights": [[1, 0], [0, 1]], "Test": "F"},
            ],
            "DummyContrasts": {"Test": "t"},
        },
        {"Level": "Subject", "Name": "subject", "Model": {"X": [1]}},
    ],
}

EVENTS = pd.DataFrame({
    "onset": [0.0, 10.0, 20.0, 30.0],
    "duration": [2.0, 2.0, 2.0, 2.0],
    "trial_type": ["a", "b", "a", "b"],
    "rt": [0.5, 0.7, 0.9, np.nan],
})


def test_load_model_reads_run_node(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(MODEL))
    model = load_model(path)
    assert model.node_name == "run_level"
    assert model.hrf_model == "spm"
    assert model.high_pass == 0.008
    assert model.input_filters == {"task": ["auditory"]}
    assert [c["Name"] for c in model.contrasts] == ["a_vs_b", "effects"]
    assert model.contrasts[1]["Weights"] == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["Nodes"][0].update(Level="Subject"), "Level"),
        (lambda m: m["Nodes"][0]["Model"].update(X=[]), "Model.X"),
        (lambda m: m["Nodes"][0]["Contrasts"][0].update(Weights=[1]), "one column per"),
        (lambda m: m["Nodes"][0]["Contrasts"][0].update(Test="z"), "Test must be"),
        (lambda m: m["Nodes"][0]["Contrasts"][1].update(Name="a_vs_b"), "repeat"),
        (lambda m: m["Nodes"][0]["Transformations"]["Instructions"].append(
            {"Name": "Orthogonalize", "Input": ["x"]}), "Orthogonalize"),
        (lambda m: m["Nodes"][0]["Model"].update(HRF={"Model": "Gamma"}), "Gamma"),
        (lambda m: m["Nodes"][0]["Model"]["Options"].update(LowPassFilterCutoffHz=0.1),
         "LowPass"),
    ],
)
def test_model_errors_name_the_key(edit, match):
    document = json.loads(json.dumps(MODEL))
    edit(document)
    with pytest.raises(ModelFileError, match=match):
        parse_model(document, source="m.json")


def test_invalid_json_is_reported(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(path)


def test_factor_scale_transformations():
    document = json.loads(json.dumps(MODEL))
    node = document["Nodes"][0]
    node["Transformations"]["Instructions"].insert(
        1, {"Name": "Scale", "Input": ["rt"], "Output": ["rt_z"]}
    )
    model = parse_model(document)
    variables = event_variables(model, EVENTS)
    assert set(variables) >= {"trial_type.a", "trial_type.b", "rt", "rt_z"}
    assert variables["trial_type.a"]["onset"].tolist() == [0.0, 20.0]
    assert variables["trial_type.a"]["amplitude"].tolist() == [1.0, 1.0]
    rt = np.array([0.5, 0.7, 0.9])
    expected = (rt - rt.mean()) / rt.std(ddof=1)
    rt_z = variables["rt_z"]
    # the n/a row (onset 30) drops out
    assert rt_z["onset"].tolist() == [0.0, 10.0, 20.0]
    np.testing.assert_allclose(rt_z["amplitude"], expected, rtol=1e-12, atol=1e-12)


def test_run_design_inputs_and_contrasts():
    model = parse_model(MODEL)
    confounds = pd.DataFrame({
        "trans_x": [np.nan, 1.0, 2.0, 3.0], "trans_y": [0.0, 1.0, 0.0, 1.0],
        "rot_x": [0.1, 0.2, 0.3, 0.4], "csf": [1.0, 2.0, 3.0, 4.0],
    })
    events, model_confounds, columns = run_design_inputs(model, EVENTS, confounds)
    assert columns == {"trial_type.a": "trial_type_a", "trial_type.b": "trial_type_b"}
    assert sorted(events["trial_type"].unique()) == ["trial_type_a", "trial_type_b"]
    assert list(model_confounds.columns) == ["trans_x", "trans_y", "rot_x"]
    assert model_confounds["trans_x"].tolist() == [1.0, 1.0, 2.0, 3.0]  # n/a → second row
    design_columns = ["trial_type_a", "trial_type_b", "trans_x", "trans_y", "rot_x", "constant"]
    contrasts = run_contrasts(model, design_columns, columns)
    by_name = {c["name"]: c for c in contrasts}
    assert list(by_name) == ["a_vs_b", "effects", "trial_type.a", "trial_type.b"]
    assert by_name["a_vs_b"]["matrix"] == [[1, -1, 0, 0, 0, 0]]
    assert by_name["effects"]["stat_type"] == "F"
    np.testing.assert_array_equal(by_name["effects"]["matrix"], np.eye(2, 6))
    assert by_name["trial_type.b"]["matrix"] == [[0, 1, 0, 0, 0, 0]]


def test_x_entry_without_match_is_an_error():
    document = json.loads(json.dumps(MODEL))
    document["Nodes"][0]["Model"]["X"].append("nothing_*")
    with pytest.raises(DesignError, match="nothing_"):
        run_design_inputs(parse_model(document), EVENTS,
                          pd.DataFrame({"trans_x": [0.0] * 4, "rot_x": [0.0] * 4}))


def test_missing_events_column():
    with pytest.raises(EventsError, match="onset"):
        event_variables(parse_model(MODEL), EVENTS.drop(columns="onset"))


def test_default_model_one_contrast_per_trial_type():
    model = default_model()
    events, confounds, columns = run_design_inputs(model, EVENTS, None)
    assert events is EVENTS and confounds is None
    contrasts = run_contrasts(model, ["a", "b", "drift_1", "constant"], columns)
    assert [c["name"] for c in contrasts] == ["a", "b"]
    assert contrasts[1]["matrix"] == [[0, 1, 0, 0]]


def test_contrasts_sharing_a_file_label_are_refused():
    document = json.loads(json.dumps(MODEL))
    document["Nodes"][0]["Contrasts"][1]["Name"] = "a vs b"  # label aVsB, like a_vs_b
    model = parse_model(document)
    columns = {"trial_type.a": "trial_type_a", "trial_type.b": "trial_type_b"}
    with pytest.raises(DesignError, match="contrast-aVsB"):
        run_contrasts(model, ["trial_type_a", "trial_type_b", "constant"], columns)
