"""Config loading: defaults, TOML/YAML, strict keys and types, value checks, rendering."""

import dataclasses

import pytest

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline.config import PipelineConfig, load_config, render_toml


def test_defaults_are_valid_and_paths_live_under_output_dir():
    config = PipelineConfig().validate()
    assert config.pipeline_root == "outputs/tfx/recsys-pipeline"
    assert config.metadata_path == "outputs/metadata.sqlite"
    assert config.serving_dir == "outputs/serving"


def test_every_knob_is_documented():
    config = PipelineConfig()
    sections = [getattr(config, f.name) for f in dataclasses.fields(config)
                if dataclasses.is_dataclass(getattr(config, f.name))]
    assert {type(s).__name__ for s in sections} >= {
        "DataConfig", "RetrievalHParams", "RankingHParams", "EvaluationConfig", "IndexParams"}
    for obj in [config] + sections:
        assert (type(obj).__doc__ or "").startswith(("[", "The whole")), type(obj)
        for f in dataclasses.fields(obj):
            if not dataclasses.is_dataclass(getattr(obj, f.name)):
                assert f.metadata.get("doc"), f"{type(obj).__name__}.{f.name} has no doc"


@pytest.mark.parametrize("toml, key", [
    ("[evaluation]\nmin_top_k_accuracy = 1.5\n", "evaluation.min_top_k_accuracy"),
    ("[retrieval]\noptimizer = \"rmsprop\"\n", "retrieval.optimizer"),
    ("[ranking]\nepochs = 0\n", "ranking.epochs"),
    ("[index]\nmin_recall = -0.1\n", "index.min_recall"),
    ("[index]\nrecall_k = 500\n", "index.recall_k"),
    ("[index]\nnum_reordering_candidates = 20\n", "index.num_reordering_candidates"),
    ("[retrieval]\nhidden_layers = [64, \"x\"]\n", "retrieval.hidden_layers"),
    ("[ranking]\narchitecture = \"transformer\"\n", "ranking.architecture"),
    ("[ranking]\ncross_layers = 0\n", "ranking.cross_layers"),
    ("[serving]\nmax_batch_size = 0\n", "serving.max_batch_size"),
    ("[serving]\nbatch_timeout_micros = -1\n", "serving.batch_timeout_micros"),
    ("[serving]\nprometheus_path = \"metrics\"\n", "serving.prometheus_path"),
    ("[recommender]\nrank_weight = 1.5\n", "recommender.rank_weight"),
    ("[recommender]\ncandidates = 0\n", "recommender.candidates"),
    ("[evaluation]\nmin_ndcg = 2.0\n", "evaluation.min_ndcg"),
    ("[evaluation]\nndcg_k = 0\n", "evaluation.ndcg_k"),
    ("[bulk]\nk = 0\n", "bulk.k"),
    ("[bulk]\nbatch_size = 0\n", "bulk.batch_size"),
    ("[bulk]\nenabled = true\n[recommender]\nenabled = false\n", "bulk.enabled"),
    ("[data]\nlayout = \"interactions\"\n[interactions]\ntimestamp_unit = \"days\"\n",
     "interactions.timestamp_unit"),
    ("[data]\nlayout = \"interactions\"\n[interactions]\nmax_rating = 0.5\n",
     "interactions.min_rating"),
    ("[data]\nlayout = \"interactions\"\n[interactions]\nitem_column = \"user_id\"\n",
     "interactions: column 'user_id'"),
])
def test_model_and_gate_values_are_checked(tmp_path, toml, key):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(str(path))


@pytest.mark.parametrize("toml, key, innocent", [
    ("[retrieval]\nmin_rating = -1\n", "retrieval.min_rating", "retrieval_weight"),
    ("[ranking]\nretrieval_weight = -1\n", "ranking.retrieval_weight", "min_rating"),
])
def test_a_bad_value_is_named_alone(tmp_path, toml, key, innocent):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as caught:
        load_config(str(path))
    assert innocent not in str(caught.value)


def test_hyperparameters_round_trip_through_custom_config():
    from recsys_pipeline.trainer.hparams import (
        RetrievalHParams,
        from_custom_config,
        to_custom_config,
    )

    hp = RetrievalHParams(hidden_layers=[32], epochs=3)
    assert from_custom_config(RetrievalHParams, to_custom_config(hp)) == hp
    with pytest.raises(ValueError, match="unknown"):
        from_custom_config(RetrievalHParams, {"epochs": 1, "bogus": 2})


def test_toml_and_yaml_load_the_same(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('output_dir = "o"\n[split]\nkind = "temporal"\neval_fraction = 0.1\n'
                    '[beam]\npipeline_args = ["--direct_num_workers=2"]\n')
    yaml = tmp_path / "c.yaml"
    yaml.write_text("output_dir: o\nsplit:\n  kind: temporal\n  eval_fraction: 0.1\n"
                    "beam:\n  pipeline_args: ['--direct_num_workers=2']\n")
    a, b = load_config(str(toml)), load_config(str(yaml))
    assert a == b
    assert a.split.kind == "temporal" and a.split.seed == 42 and a.output_dir == "o"


def test_int_is_accepted_for_float(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[data]\nmax_orphan_fraction = 0\n")
    assert load_config(str(path)).data.max_orphan_fraction == 0.0


@pytest.mark.parametrize("text, message", [
    ("[data]\nmax_orphan = 0.1\n", r"c.toml: unknown key 'data.max_orphan'.*max_orphan_fraction"),
    ("colour = 1\n", r"unknown key 'colour'"),
    ("[split]\nseed = \"42\"\n", r"c.toml: split.seed must be int, got '42' \(str\)"),
    ("[split]\nseed = true\n", r"split.seed must be int, got True \(bool\)"),
    ("enable_cache = 1\n", r"enable_cache must be bool, got 1"),
    ("data = 3\n", r"data must be a table"),
    ("[beam]\npipeline_args = \"--runner=X\"\n", r"beam.pipeline_args must be a list"),
    ("[split]\neval_fraction = 1.5\n", r"split.eval_fraction must be strictly between 0 and 1"),
    ("[split]\nkind = \"by-user\"\n", r"split.kind is 'by-user'"),
    ("[data]\nlayout = \"ml-20m\"\n", r"data.layout is 'ml-20m'"),
    ("[transform]\ntimestamp_buckets = 1\n", r"timestamp_buckets must be at least 2"),
    ("[split]\ncutoff_timestamp = 5\n", r"cutoff_timestamp only applies to split.kind"),
    ("[data\n", r"does not parse"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.toml"))
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="use a .toml, .yaml or .yml file"):
        load_config(str(tmp_path / "c.json"))


def test_rendered_toml_loads_back_to_the_same_config(tmp_path):
    config = dataclasses.replace(PipelineConfig(), output_dir="elsewhere")
    path = tmp_path / "rendered.toml"
    path.write_text(render_toml(config))
    assert load_config(str(path)) == config
    assert "# Seed of the random split." in path.read_text()



def test_default_beam_arguments_run_beam_in_process_without_fetching_a_runner(caplog):
    # Beam's DirectRunner tries to download its Prism runner from GitHub and runs there when
    # it can: the defaults name the runner every measurement here used.
    import logging

    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    caplog.set_level(logging.INFO)
    with beam.Pipeline(argv=PipelineConfig().beam.pipeline_args) as p:
        counted = p | beam.Create([1, 2, 3]) | beam.combiners.Count.Globally()
        assert_that(counted, equal_to([3]))
    assert "prism" not in caplog.text.lower()
    assert "Creating state cache" in caplog.text  # the FnApiRunner's worker ran it
