"""Typed recipes: YAML -> pydantic models, dotted overrides, friendly validation errors.

A recipe is plain data. Unknown keys are rejected with their path and the closest valid key;
nothing in a recipe is evaluated as code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from honed.errors import HonedError, closest
from honed.metrics import DIRECTION, TASKS
from honed.presets import expand_preset


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 floats such as 3e-5 (YAML 1.1 leaves them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$|^[-+]?[0-9][0-9_]*\.[0-9_]*$"),
    list("-+0123456789."),
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitSpec(Section):
    """How to carve val/test out of train when they are not given as files."""

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)
    method: Literal["stratified", "group", "random"] = "stratified"


class RowLimits(Section):
    """Seeded random subsets per split, applied after splitting (for quick runs)."""

    train: int | None = Field(None, ge=1)
    val: int | None = Field(None, ge=1)
    test: int | None = Field(None, ge=1)


class PreprocessSpec(Section):
    """Text clean-up for every split and, through the saved recipe, at predict time (see
    honed/data/preprocess.py); `missing` and the length limits drop rows only when training."""

    unicode: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFC"
    whitespace: bool = True
    lower: bool = False
    strip_html: bool = False
    missing: Literal["fill", "drop"] = "fill"
    fill_value: str = ""
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)
    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)


class DataSpec(Section):
    kind: Literal["text", "image"] = "text"
    train: str | None = None
    val: str | None = None
    test: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str | list[str] = "label"  # regression: one numeric column, or a list of them (several targets)
    label_delimiter: str = "|"  # multilabel: a cell's labels split on this, or a JSON list ["a", "b"]; empty: none
    path_column: str = "path"
    group_column: str | None = None
    labels: list[str] | None = None
    split: SplitSpec = SplitSpec()
    max_rows: RowLimits = RowLimits()
    max_length: int = Field(128, ge=2, le=8192)
    truncation: Literal["right", "head_tail", "sliding"] = "right"  # over max_length: start, head + tail, windows
    image_size: int = Field(224, ge=8, le=4096)
    num_workers: int = Field(0, ge=0)
    group_by_length: bool = True  # text: batch rows of like token count (less padding); eval/predict sort by length
    preprocess: PreprocessSpec = PreprocessSpec()
    image_stats: Literal["backbone", "train"] = "backbone"
    normalise_labels: bool = False  # merge labels that differ only by case or surrounding spaces (else refused)
    skip_bad_rows: bool = False  # drop unreadable images (counted and listed) instead of stopping


class DropoutSpec(Section):
    """Dropout rates that replace the pretrained model's own; None keeps the model's rate."""

    hidden: float | None = Field(None, ge=0.0, lt=1.0)
    attention: float | None = Field(None, ge=0.0, lt=1.0)
    classifier: float | None = Field(None, ge=0.0, lt=1.0)


class FusionMember(Section):
    """One backbone of a fusion: a Hugging Face text model, or a torchvision/timm name + weights."""

    name: str
    source: Literal["auto", "huggingface", "torchvision", "timm"] = "auto"
    weights: str | None = None


class FusionSpec(Section):
    """Several pretrained backbones as one model: pooled features concatenated or attention-pooled."""

    members: list[FusionMember] = Field(min_length=1)  # one member: its mean-pooled features + a fresh head
    pool: Literal["concat", "attention"] = "concat"


class ModelSpec(Section):
    name: str = "sentence-transformers/all-MiniLM-L6-v2"  # source=python: "pkg.module:factory", imported by opt-in
    source: Literal["auto", "huggingface", "torchvision", "timm", "python", "textrnn"] = "auto"
    weights: str | None = None
    args: dict[str, Any] = {}  # source=python: keyword arguments of the factory (mean/std also set image normalisation)
    strict: bool = True  # model.weights must fit every key and shape (source=python)
    head: str | None = None  # source=python: dotted path of the nn.Linear to replace; None = the last nn.Linear
    tokenizer: str | None = None  # source=python, text: a Hugging Face tokenizer id or folder
    dropout: DropoutSpec = DropoutSpec()
    fusion: FusionSpec | None = None
    keep_layers: int | list[int] | None = None  # a shallower student: N evenly spaced layers, or these indices


class OptimSpec(Section):
    lr: float = Field(5e-5, gt=0.0, le=10.0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    no_decay: list[str] = ["bias", "norm"]
    layer_decay: float | None = Field(None, gt=0.0, le=1.0)
    group_lr: dict[str, float] = {}

    @field_validator("group_lr")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, lr in value.items():
            if lr <= 0:
                raise ValueError(f"learning rate of group '{name}' must be > 0")
        return value


class ScheduleSpec(Section):
    """`name` picks a registered schedule; any other key is passed to its factory."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = "linear"
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    warmup_steps: int | None = Field(None, ge=0)


class LossSpec(BaseModel):
    """`name` picks a registered loss; any other key is passed to its factory."""

    model_config = ConfigDict(extra="allow")
    name: str = "cross_entropy"


class TechniqueSpec(BaseModel):
    """`name` picks a registered technique; any other key is passed to its factory."""

    model_config = ConfigDict(extra="allow")
    name: str


class TransformSpec(BaseModel):
    """`name` picks a registered augmentation; any other key (p, strength, ...) goes to its factory."""

    model_config = ConfigDict(extra="allow")
    name: str


class AugmentSpec(Section):
    """Training-time augmentation (off for evaluation) and test-time augmentation views."""

    image: list[TransformSpec] = []
    text: list[TransformSpec] = []
    tta: int = Field(0, ge=0, le=64)


class TrainSpec(Section):
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    metric: str = "accuracy"
    mode: Literal["max", "min"] = "max"
    checkpoint_every_steps: int | None = Field(None, ge=1)
    max_bad_steps: int | None = Field(3, ge=0)  # NaN/inf-gradient steps skipped before the run stops; null: no limit
    cpu: bool = False
    cache_frozen_features: bool = False  # frozen backbone: compute its features once, train the head on them
    compile: bool = False  # torch.compile first (off: slower on CPU counting compile time, bench/RESULTS.md Speed)
    channels_last: bool | Literal["auto"] = "auto"  # NHWC weights for CNNs; auto: on CUDA and CPU (measured)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        valid = tuple(dict.fromkeys(name for task in TASKS.values() for name in task.names))
        if value not in valid:
            hint = closest(value, valid)
            tip = f" (did you mean '{hint}'?)" if hint else f"; valid: {', '.join(valid)}"
            raise ValueError(f"unknown metric '{value}'{tip}")
        return value


class LogSpec(Section):
    """Experiment trackers (accelerate's): each logs the recipe as parameters and every epoch's
    metrics. `tensorboard: true` is the older spelling of `trackers: [tensorboard]`."""

    tensorboard: bool = False
    trackers: list[Literal["tensorboard", "mlflow", "wandb"]] = []

    def chosen(self) -> list[str]:
        """The trackers to start, each once, in the order given."""
        return list(dict.fromkeys([*self.trackers, *(["tensorboard"] if self.tensorboard else [])]))


class ReportSpec(Section):
    """The error-analysis report written after training (honed/evaluate/report.py)."""

    enabled: bool = True
    slices: list[str] = []
    top_k: int = Field(20, ge=0, le=1000)
    calibrate: bool = True


class PretrainSpec(Section):
    """`honed pretrain`: continued self-supervised pretraining (masked-LM text, rotated images) on in-domain data."""

    data: str | None = None  # an unlabelled table/folder; None = the recipe's training split (labels unused)
    epochs: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0.0, le=10.0)
    batch_size: int = Field(32, ge=1)
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)
    whole_word: bool = False
    max_rows: int | None = Field(None, ge=1)
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)  # linear warmup share of the steps, then linear decay


class Recipe(Section):
    name: str = "run"
    description: str = ""
    task: Literal["auto", "classification", "regression", "multilabel"] = "auto"  # auto: float labels -> regression
    seed: int = 42
    output_dir: str | None = None
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    optim: OptimSpec = OptimSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    loss: LossSpec = LossSpec()
    train: TrainSpec = TrainSpec()
    techniques: list[TechniqueSpec] = []
    augment: AugmentSpec = AugmentSpec()
    preset: str | None = None
    log: LogSpec = LogSpec()
    report: ReportSpec = ReportSpec()
    pretrain: PretrainSpec = PretrainSpec()
    ensemble: dict[str, Any] | None = None  # `honed ensemble` validates it (honed/ensemble/spec.py); train ignores it
    search: dict[str, Any] | None = None  # `honed tune` validates it (honed/tune/spec.py); train ignores it
    climb: dict[str, Any] | None = None  # `honed climb` validates it (honed/climb/spec.py); train ignores it

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, tree: Any) -> Any:
        """Fill what the task (honed.metrics.TASKS) decides where the recipe is silent: the loss (regression:
        mse), the checkpoint metric (rmse) and, for a metric with a fixed direction, `train.mode` (rmse: min)."""
        task = TASKS.get(tree.get("task")) if isinstance(tree, dict) else None
        loss, train = (tree.get("loss") or {}, tree.get("train") or {}) if task else ({}, {})
        if task and isinstance(loss, dict) and isinstance(train, dict):
            tree["loss"] = {"name": task.default_loss, **loss}
            tree["train"] = train = {"metric": task.default_metric, **train}
            if train["metric"] in DIRECTION:
                tree["train"] = {"mode": DIRECTION[train["metric"]], **train}
        return tree

    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_override(text: str) -> tuple[str, Any]:
    """`optim.lr=3e-5` -> ('optim.lr', 3e-05); the value is read as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise HonedError(f"override '{text}': expected KEY=VALUE, e.g. optim.lr=3e-5")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise HonedError(f"override '{text}': value is not valid YAML ({exc.problem})") from exc
    return key.strip(), value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `tree['a']['b'] = value` for key 'a.b'; integer parts index lists."""
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, parts[: i + 1])]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, (dict, list)):
            raise HonedError(f"override '{key}': '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = child
    if isinstance(node, list):
        idx = _list_index(node, parts[-1], parts)
        node[idx] = value
    else:
        node[parts[-1]] = value


def _list_index(node: list[Any], part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise HonedError(f"override '{'.'.join(path)}': '{part}' is not an index of a list of {len(node)} items")
    return int(part)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise HonedError(f"recipe file '{path}' not found; `honed recipes` lists the shipped ones")
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HonedError(f"recipe file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(tree, dict):
        raise HonedError(f"recipe file '{path}' must hold a mapping of sections (data:, model:, ...)")
    tree.setdefault("name", path.stem)
    return tree


def build_recipe(tree: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "recipe") -> Recipe:
    """Validate a raw recipe tree after applying dotted overrides."""
    tree = yaml.safe_load(yaml.safe_dump(tree))  # deep copy of plain data
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    expand_preset(tree)
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as exc:
        raise HonedError(f"{source}: {explain(exc)}") from exc
    metric, columns = recipe.train.metric, recipe.data.label_column  # settings of another task: one line
    if recipe.task in TASKS and metric not in TASKS[recipe.task].names:
        raise HonedError(f"{source}: train.metric '{metric}' is not a {recipe.task} metric; use one of "
                         f"{', '.join(TASKS[recipe.task].names)}")
    if isinstance(columns, list) and (not columns or (recipe.task not in ("auto", "regression") and len(columns) > 1)):
        raise HonedError(f"{source}: data.label_column lists {len(columns)} columns; a list names regression "
                         "targets (task: regression); classification and multilabel read one label column")
    return recipe


def load_recipe(recipe: str | Path | dict[str, Any] | Recipe, overrides: dict[str, Any] | None = None) -> Recipe:
    """A Recipe from a YAML path, a dict or a Recipe, with dotted overrides applied."""
    if isinstance(recipe, Recipe):
        return build_recipe(recipe.model_dump(mode="json"), overrides)
    if isinstance(recipe, dict):
        return build_recipe(recipe, overrides)
    return build_recipe(read_yaml(recipe), overrides, source=str(recipe))


def explain(exc: ValidationError) -> str:
    """The first validation error as one line: the key's path, what is wrong, and a hint."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        valid = _fields_at(err["loc"][:-1])
        hint = closest(str(err["loc"][-1]), valid)
        owner = ".".join(str(p) for p in err["loc"][:-1])  # the section holding the unknown key
        tip = f"; did you mean '{owner + '.' if owner else ''}{hint}'?" if hint else f"; valid keys: {', '.join(valid)}"
        return f"unknown key '{path}'{tip}"
    return f"'{path}': {err['msg']} (got {err.get('input')!r})"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section found by walking `loc` from Recipe."""
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or [])]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)
