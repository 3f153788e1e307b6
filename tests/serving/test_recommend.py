"""recsys recommend's Recommender: a client of the pushed recommender, loaded as TF Serving
loads it."""

import math
import shutil

import pytest

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout, recommend, two_stage
from tests.serving.conftest import CANDIDATES, WHEN
from tests.trainer.conftest import rated_items


def _push(export_dir, serving_dir, name):
    version = serving_dir / name / "1"
    shutil.copytree(export_dir, version)
    (version / "assets.extra").mkdir(exist_ok=True)
    (version / "assets.extra" / layout.PUSH_RECORD).write_text("{}")


def test_recommend_lists_only_unrated_items_and_leaves_out_unfilled_places(stages, tiny,
                                                                          tmp_path):
    # The whole tiny catalogue is retrieved (N = CANDIDATES): a user who rated r of its items
    # has CANDIDATES - r to be shown, and asking for more leaves places unfilled (score -inf),
    # which must not be listed.
    _, scann_dir, ranking_dir = stages
    two_stage.build(scann_dir, ranking_dir, str(tmp_path / "built"), 0.25)
    served = tmp_path / "serving"
    _push(tmp_path / "built", served, nodes.RECOMMENDER_MODEL)
    recommender = recommend.Recommender(str(served))
    assert recommender.candidates == CANDIDATES
    rated = rated_items(tiny)
    k = CANDIDATES - min(len(m) for m in rated.values()) + 1  # more than anyone has unrated
    for user in sorted(rated):
        found = recommender.recommend(user.decode(), k=k, timestamp=WHEN)
        items = [item.item_id.encode() for item in found.items]
        assert found.known_user and len(set(items)) == len(items)
        assert len(items) == CANDIDATES - len(rated[user]), (user, items)
        assert not set(items) & rated[user], items
        assert all(math.isfinite(i.retrieval_score) and math.isfinite(i.score)
                   for i in found.items)
        scores = [i.score for i in found.items]
        assert scores == sorted(scores, reverse=True)
    assert found.versions == {nodes.RECOMMENDER_MODEL: str(served / nodes.RECOMMENDER_MODEL
                                                            / "1")}
    with pytest.raises(ConfigError, match=f"--k {CANDIDATES + 1} must be from 1 to the "
                                          f"{CANDIDATES} candidates"):
        recommender.recommend("u1", k=CANDIDATES + 1)
