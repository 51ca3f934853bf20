"""EMA teacher and consistency: exact EMA arithmetic over parameters and buffers, the teacher kept
out of the student, weighting, and consistency gradients reaching the student for every task."""

import copy

import pytest
import torch
from detectron2.modeling import build_model

from fx_d2.modeling.teacher import EMATeacher, consistency_loss
from fx_d2.testing.model import synthetic_batch, synthetic_metadata, tiny_cfg

KEY = "h5teach_all"
LABELS = {"num_cls": 2, "num_things": 2, "num_seg": 2}


@pytest.fixture(scope="module", autouse=True)
def metadata():
    with synthetic_metadata(KEY, ("cls", "loc", "seg"), ("a", "b"), ("a", "b"), ("a", "b")):
        yield


def _model(*opts):
    torch.manual_seed(0)
    model = build_model(tiny_cfg([KEY], ["MODEL.FX.UPERNET.NORM", "BN", *opts]))
    model.train()
    return model


def _perturb(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tensors = list(model.named_parameters()) + list(model.named_buffers())
        for name, t in tensors:
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=gen) * 0.05)
            elif name.endswith("num_batches_tracked"):
                t.fill_(7)


def test_ema_update_is_exact_for_parameters_and_buffers():
    student = _model()
    teacher = EMATeacher(student)
    assert not teacher.module.training
    assert all(not p.requires_grad for p in teacher.module.parameters())
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    _perturb(student)
    m = 0.8
    teacher.update(student, m)
    s_state = student.state_dict()
    buffers = {name for name, _ in student.named_buffers()}
    checked_float_buffer = False
    for name, value in teacher.module.state_dict().items():
        if value.is_floating_point():
            expected = torch.add(before[name] * m, s_state[name], alpha=1 - m)
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-7, msg=name)
            checked_float_buffer |= name in buffers
        else:
            assert torch.equal(value, s_state[name]), name  # copied, e.g. num_batches_tracked
    assert checked_float_buffer  # BN running stats took part
    teacher.update(student, 0.0)
    assert all(torch.equal(v, s_state[k]) for k, v in teacher.module.state_dict().items())
    with pytest.raises(ValueError, match="momentum"):
        teacher.update(student, 1.5)


def test_teacher_state_dict_round_trip_and_evaluation():
    student = _model()
    teacher = EMATeacher(student)
    _perturb(student)
    other = EMATeacher(student)
    other.load_state_dict(teacher.state_dict())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    with torch.no_grad():
        out = teacher.module([{"image": torch.rand(3, 64, 64) * 255, "dataset_name": KEY}])
    assert set(out[0]) == {"cls_probs", "instances", "sem_seg"}


def test_teacher_stays_outside_the_student():
    student = _model()
    teacher = EMATeacher(student)
    student.attach_teacher(teacher)
    assert student.teacher is teacher.module
    teacher_params = {id(p) for p in teacher.module.parameters()}
    assert not teacher_params & {id(p) for p in student.parameters()}
    assert not any(m is teacher.module for m in student.modules())
    assert set(student.state_dict()) == set(teacher.state_dict())  # no "teacher." entries
    assert copy.deepcopy(student).teacher is None  # copies/pickles do not drag the teacher along
    student.attach_teacher(None)
    assert student.teacher is None


def test_consistency_weighting_sums_to_mixed_loss():
    student = _model("MODEL.FX.CONSISTENCY_WEIGHT", 0.25)
    batch = synthetic_batch(KEY, "cls", **LABELS)
    torch.manual_seed(5)
    plain = student(batch)
    student.attach_teacher(EMATeacher(student))
    torch.manual_seed(5)
    mixed = student(batch)
    assert set(mixed) == {"loss_cls", "loss_consistency"}
    torch.testing.assert_close(mixed["loss_cls"], 0.75 * plain["loss_cls"])
    assert mixed["loss_consistency"] >= 0


@pytest.mark.parametrize("task", ["cls", "loc", "seg"])
def test_consistency_gradient_reaches_the_student(task):
    student = _model()
    teacher = EMATeacher(student)
    _perturb(teacher.module)  # make teacher features differ from the student's
    student.attach_teacher(teacher)
    losses = student(synthetic_batch(KEY, task, **LABELS))
    assert losses["loss_consistency"] > 0
    losses["loss_consistency"].backward()
    shared = {"cls": student.backbone, "loc": student.loc_encoder, "seg": student.seg_decoder}[task]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shared.parameters())
    assert student.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.module.parameters())


def test_locked_consistency_skips_the_teacher_unless_asked():
    for when_locked in (False, True):
        student = _model("MODEL.FX.CONSISTENCY_WHEN_LOCKED", when_locked)
        teacher = EMATeacher(student)
        _perturb(teacher.module)
        student.attach_teacher(teacher)
        calls = []
        handle = teacher.module.backbone.patch_embed.register_forward_hook(
            lambda *a: calls.append(1)
        )
        student.set_locked(True)
        losses = student(synthetic_batch(KEY, "seg", **LABELS))
        handle.remove()
        assert set(losses) == {"loss_seg_dice", "loss_consistency"}
        assert (losses["loss_consistency"].item() > 0) == when_locked
        assert bool(calls) == when_locked


def test_consistency_loss_normalises_channels():
    s = torch.randn(2, 4, 3, 3)
    assert consistency_loss([s], [3.0 * s]).item() < 1e-12  # scale-invariant per position
    with pytest.raises(ValueError):
        consistency_loss([s], [s[:, :2]])
