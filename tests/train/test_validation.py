import numpy as np
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.train.metrics import RankingEvaluator
from iclrec_tf.train.validation import RankingValidation


def test_adds_val_metrics_to_the_epoch_logs(tmp_path, capsys):
    data = load_sequences(write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=40)))
    model = build_model(TrainConfig(max_seq_length=10, hidden_size=8, num_blocks=1),
                        data.item_size)
    evaluator = RankingEvaluator(model, SequencePipelines(data, 10).evaluation("valid", 16),
                                 "reference", data.mask_id)
    callback = RankingValidation(evaluator)
    callback.set_model(model)
    callback.on_train_begin()
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    expected = evaluator()
    assert logs == {"loss": 1.0, **{f"val_{k}": v for k, v in expected.items()}}
    assert len(callback.seconds) == 1 and callback.seconds[0] > 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("Validation 1: ") and f"NDCG@20 {expected['NDCG@20']:.4f}" in line
    assert np.isfinite(list(logs.values())).all()
