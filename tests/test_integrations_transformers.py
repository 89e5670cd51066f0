"""SAMTrainer (issue 13): a transformers.Trainer taking SAM steps equals a plain loop with
sam_course.SAM around torch.optim.AdamW (same hyper-parameters, constant LR, no clipping, float32,
atol 1e-6) on the same batches; with accumulation, SAM on the union of the micro-batches."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from sam_course.integrations.transformers import SAMTrainer  # noqa: E402
from sam_course.optim import SAM  # noqa: E402

N, LR, RHO = 8, 1e-2, 0.1


class Tiny(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x, labels=None):
        logits = self.body(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def examples() -> list[dict]:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(N, 6, generator=g), torch.randint(0, 3, (N,), generator=g)
    return [{"x": x[i], "labels": y[i]} for i in range(N)]


def arguments(tmp_path, **kwargs):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=N, learning_rate=LR, lr_scheduler_type="constant",
                warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0, max_steps=3, report_to="none", use_cpu=True,
                save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0, dataloader_num_workers=0)
    base.update(kwargs)
    return transformers.TrainingArguments(**base)


def plain_loop(model, steps: int, clip: float | None = None, sgd: bool = False, lr: float = LR) -> None:
    """SAM around AdamW (or SGD) on the fixed batch of all N examples (a mean loss: the order does not matter)."""
    batch = examples()
    x, y = torch.stack([e["x"] for e in batch]), torch.stack([e["labels"] for e in batch])
    if sgd:
        opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=lr)
    else:
        opt = SAM(model.parameters(), torch.optim.AdamW, rho=RHO, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    for _ in range(steps):
        def closure():
            loss = model(x, y)["loss"]
            loss.backward()
            if clip is not None and opt.perturbed:  # the gradient the base applies
                assert float(nn.utils.clip_grad_norm_(model.parameters(), clip)) > clip  # the clip is active
            return loss
        opt.step(closure)


def assert_same(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_sam_trainer_equals_sam_around_adamw(tmp_path, accumulation):
    model = Tiny()
    args = arguments(tmp_path, per_device_train_batch_size=N // accumulation, gradient_accumulation_steps=accumulation)
    trainer = SAMTrainer(model=model, args=args, train_dataset=examples(), rho=RHO)
    trainer.train()
    assert isinstance(trainer.sam, SAM) and type(trainer.sam.base_optimizer) is torch.optim.AdamW
    assert trainer.state.global_step == 3
    ref = Tiny()
    plain_loop(ref, 3)
    assert_same(model, ref)


def test_max_grad_norm_clips_the_second_gradient(tmp_path):
    """With SGD (AdamW would hide a missing clip: it is almost invariant to the gradient's scale)."""
    model = Tiny()
    args = arguments(tmp_path, max_grad_norm=0.01, optim="sgd", learning_rate=1.0)
    trainer = SAMTrainer(model=model, args=args, train_dataset=examples(), rho=RHO)
    trainer.train()
    assert type(trainer.sam.base_optimizer) is torch.optim.SGD
    ref, unclipped = Tiny(), Tiny()
    plain_loop(ref, 3, clip=0.01, sgd=True, lr=1.0)
    plain_loop(unclipped, 3, sgd=True, lr=1.0)
    assert_same(model, ref)
    assert not torch.allclose(ref.body[0].weight, unclipped.body[0].weight, atol=1e-3)


def test_resume_from_checkpoint_continues_the_same_run(tmp_path):
    whole = Tiny()
    SAMTrainer(model=whole, args=arguments(tmp_path / "a", max_steps=4), train_dataset=examples(), rho=RHO).train()
    first = Tiny()
    args = arguments(tmp_path / "b", max_steps=4, save_strategy="steps", save_steps=2)
    SAMTrainer(model=first, args=args, train_dataset=examples(), rho=RHO).train()
    resumed = Tiny(seed=7)  # other weights: the checkpoint must bring them back
    SAMTrainer(model=resumed, args=args, train_dataset=examples(), rho=RHO).train(
        resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"))
    assert_same(resumed, whole)
    ref = Tiny()
    plain_loop(ref, 4)
    assert_same(whole, ref)


def test_sam_trainer_refuses_what_it_cannot_drive(tmp_path):
    model = Tiny()
    with pytest.raises(ValueError, match="rho must be"):
        SAMTrainer(model=model, args=arguments(tmp_path), train_dataset=examples(), rho=-1)
    adam = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="optimizers\\[0\\] must be a sam_course SAM"):
        SAMTrainer(model=model, args=arguments(tmp_path), train_dataset=examples(), optimizers=(adam, None))


def tiny_bert(seed: int = 0):
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config)


def bert_examples() -> list[dict]:
    g = torch.Generator().manual_seed(6)
    ids, labels = torch.randint(1, 40, (N, 10), generator=g), torch.randint(0, 2, (N,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(10, dtype=torch.long), "labels": labels[i]}
            for i in range(N)]


@pytest.mark.parametrize("accumulation", [1, 2])
def test_a_tiny_bert_built_from_a_config_trains_like_sam_around_adamw(tmp_path, accumulation):
    """SAMTrainer keeps the Trainer's loss scaling. A model whose forward takes ``**kwargs`` (BERT)
    makes the Trainer skip its division by gradient_accumulation_steps (it expects the model to
    normalize by num_items_in_batch, which BertForSequenceClassification does not), so a plain
    Trainer's gradient is the sum of the micro-batch means: ``accumulation`` times the batch mean.
    The oracle takes that same loss, micro-batch by micro-batch; AdamW's eps makes the factor visible."""
    model = tiny_bert()
    args = arguments(tmp_path, per_device_train_batch_size=N // accumulation, gradient_accumulation_steps=accumulation,
                     train_sampling_strategy="sequential")
    trainer = SAMTrainer(model=model, args=args, train_dataset=bert_examples(), rho=RHO)
    trainer.train()
    # Each micro-batch's mean loss, times 1 when the Trainer sums them, 1 / accumulation when it averages.
    weight = 1.0 if trainer.model_accepts_loss_kwargs else 1.0 / accumulation
    ref = tiny_bert()
    rows = bert_examples()
    size = N // accumulation
    micro = [{k: torch.stack([e[k] for e in rows[i:i + size]]) for k in rows[0]} for i in range(0, N, size)]
    opt = SAM(ref.parameters(), torch.optim.AdamW, rho=RHO, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    for _ in range(3):
        def closure():
            for m in micro:  # the Trainer's order: train_sampling_strategy="sequential"
                (weight * ref(**m).loss).backward()
        opt.step(closure)
    assert_same(model, ref)
