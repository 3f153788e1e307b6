"""The Recommender over pushed versions, loaded as TF Serving loads them."""

import math
import shutil

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import index, layout, recommend
from recsys_pipeline.trainer import ranking_trainer, retrieval_trainer
from recsys_pipeline.trainer.common import load_training_data
from recsys_pipeline.trainer.hparams import RankingHParams
from tests.trainer.conftest import rated_movies


def _push(export_dir, serving_dir, name):
    version = serving_dir / name / "1"
    shutil.copytree(export_dir, version)
    (version / "assets.extra").mkdir(exist_ok=True)
    (version / "assets.extra" / layout.PUSH_RECORD).write_text("{}")


def test_recommend_lists_only_unrated_movies_the_search_found(retrieval, data, tiny, tmp_path,
                                                             short_scann):
    # Every search fills short_scann of k=5 places; the unfilled ones (score -inf, row 0's
    # movie) must not be re-ranked into the list, nor the user's rated movies.
    model, _, _ = retrieval
    path = str(tmp_path / "retrieval")
    retrieval_trainer.export_model(model, data, path, serving_k=5, eval_k=5, exclude=False,
                                   rated=retrieval_trainer.rated_by_user(data, tiny.train_files))
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4, num_leaves_to_search=4)
    index.build_scann_export(path, str(tmp_path / "scann"), params, users,
                             [880_000_000] * len(users))
    data = load_training_data(tiny.transform_dir, tiny.train_files, tiny.catalogue_dir)
    model, _, _ = ranking_trainer.train(data, RankingHParams(epochs=1, ensemble=1),
                                        tiny.train_files, tiny.eval_files)
    ranking_trainer.export_model(model, data, str(tmp_path / "ranking"))
    served = tmp_path / "serving"
    _push(tmp_path / "scann", served, nodes.SCANN_MODEL)
    _push(tmp_path / "ranking", served, nodes.RANKING_MODEL)

    recommender = recommend.Recommender(str(served))
    lists = [recommender.recommend(user, k=5, timestamp=880_000_000) for user in users]
    assert all(r.known_user for r in lists)
    rated = rated_movies(tiny)
    for r in lists:
        movies = [item.movie_id for item in r.items]
        assert len(set(movies)) == len(movies) <= short_scann, movies
        assert not {m.encode() for m in movies} & rated[r.user_id.encode()], movies
        assert all(math.isfinite(item.retrieval_score) for item in r.items), r.items
    assert sum(len(r.items) for r in lists) > 0
