"""Trainer plumbing: a diverging loss stops every Trainer's fit, naming the model and epoch."""

import math

import pytest

from recsys_pipeline.errors import TrainingError
from recsys_pipeline.trainer import common, ranking_trainer, retrieval_trainer
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_non_finite_batch_loss_raises_naming_the_epoch_and_batch(loss):
    progress = common.EpochProgress("ranking", 5)
    progress.on_epoch_begin(2)
    progress.on_train_batch_end(0, {"loss": 1.5})
    with pytest.raises(TrainingError, match=rf"^ranking: the training loss became {loss} at "
                       r"epoch 3/5, batch 7: the model diverged; lower \[ranking\] "
                       "learning_rate or check the data's values$"):
        progress.on_train_batch_end(6, {"loss": loss})


def test_an_absurd_learning_rate_stops_retrieval_training(data, tiny):  # noqa: F811
    hp = RetrievalHParams(embedding_dim=8, epochs=3, learning_rate=1e30)
    with pytest.raises(TrainingError, match=r"^retrieval: the training loss became (nan|inf) "
                       r"at epoch \d/3, batch \d+"):
        retrieval_trainer.train(data, hp, tiny.train_files)


def test_an_absurd_learning_rate_stops_ranking_training(data, tiny):  # noqa: F811
    hp = RankingHParams(epochs=3, ensemble=1, learning_rate=1e30)
    with pytest.raises(TrainingError, match=r"^ranking: the training loss became (nan|inf) "
                       r"at epoch \d/3, batch \d+"):
        ranking_trainer.train(data, hp, tiny.train_files, tiny.eval_files)
