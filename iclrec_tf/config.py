"""One training configuration, and its presets: the paper's per dataset, and ICLRec+."""

import dataclasses
import json
import math

from iclrec_tf.errors import ConfigError

CONTRAST_TYPES = ("hybrid", "intent", "instance", "none")
# "none": each view is the input itself (the paper's Table 2, row E).
AUGMENTATIONS = ("random", "crop", "mask", "reorder", "none")
PROTOCOLS = ("reference", "exclude")
NEXT_ITEM_LOSSES = ("bce", "softmax", "sampled")
POOLINGS = ("mean", "masked_mean")
SEQCL_REPRESENTATIONS = ("flatten", "masked_mean", "last")
VIEW_ENCODINGS = ("shared", "separate")
KMEANS = ("minibatch", "full")
MIXED_PRECISIONS = ("float32", "bfloat16")
TRAIN_SAMPLES = ("users", "prefixes")
CONTRAST_VIEWS = ("augmented", "same_target")

# Encoder depth of the reference's released scripts; everything else is shared.
DATASET_PRESETS = {
    "toys": {"num_blocks": 3},
    "beauty": {"num_blocks": 1},
    "sports": {"num_blocks": 2},
    "yelp": {"num_blocks": 2},
}
# ICLRec+: what the ablation in docs/BENCHMARKS.md chose, on top of the paper preset
# (README, "ICLRec+"), for every dataset and for a dataset file of one's own.
PLUS_PRESET = {
    "next_item_loss": "softmax", "length_buckets": True, "pooling": "masked_mean",
    "seqcl_representation": "masked_mean", "normalize_views": True, "temperature": 0.2,
    "patience": 10,
    # ICL joins after 10 epochs: intents clustered from an encoder that already ranks.
    "warm_up_epochs": 10,
}
# Where the ablation chose otherwise for one dataset (docs/BENCHMARKS.md, "ICLRec+";
# one seed so far): on Beauty the sampled softmax, best valid NDCG@20 0.0803 against
# the full softmax's 0.0780.
PLUS_DATASET_PRESETS = {
    "beauty": {"next_item_loss": "sampled"},
}
PRESETS = ("paper", "plus")
# Settings that change how fast a run goes, never what it computes: a resumed run may
# take other values.
SPEED_ONLY_FIELDS = ("eval_batch_size",)
# Settings a resumed run may raise: up to the epoch where the lower value would have
# ended it, a run of either value trains the same, so it goes on as a run started
# with the higher value would have.
EXTENDABLE_FIELDS = ("epochs", "patience")


@dataclasses.dataclass
class TrainConfig:
    """Every hyper-parameter of an ICLRec run, with the reference's defaults.

    Field names double as command-line flags (`num_blocks` is `--num-blocks`).
    """

    dataset: str = "toys"
    # The run's first N users only (0: all), kept here so that `evaluate --run` and a
    # resume read the same users.
    max_users: int = 0
    seed: int = 1
    epochs: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    max_seq_length: int = 50
    hidden_size: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    hidden_dropout: float = 0.5
    attention_dropout: float = 0.5
    initializer_range: float = 0.02
    contrast_type: str = "hybrid"
    fnm: bool = False
    num_intent_clusters: int = 256
    seqcl_weight: float = 0.1
    icl_weight: float = 0.1
    temperature: float = 1.0
    warm_up_epochs: int = 0
    patience: int = 40
    augmentation: str = "random"
    crop_ratio: float = 0.2
    mask_ratio: float = 0.7
    reorder_ratio: float = 0.2
    eval_batch_size: int = 256
    validation_protocol: str = "reference"
    preset: str = "paper"
    next_item_loss: str = "bce"
    num_negatives: int = 256
    pooling: str = "mean"
    seqcl_representation: str = "flatten"
    normalize_views: bool = False
    length_buckets: bool = False
    view_encodings: str = "shared"
    kmeans: str = "minibatch"
    mixed_precision: str = "float32"
    recompute_blocks: bool = False
    # What a training sample is: a user (targets at every position) or one of its
    # prefixes (the target after it, at the last position): data.pipeline.
    train_samples: str = "users"
    # The contrastive views: two augmentations of the input, or (with prefixes) the
    # input and another prefix with its next item.
    contrast_views: str = "augmented"

    @classmethod
    def for_dataset(cls, dataset, preset="paper", **overrides):
        """The `preset` of `dataset` (the paper's encoder depth if it has one), then
        `overrides`.

        Raises:
          ConfigError: for an unknown `preset`.
        """
        if preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        settings = dict(DATASET_PRESETS.get(dataset, {}))
        if preset == "plus":
            settings.update(PLUS_PRESET)
            settings.update(PLUS_DATASET_PRESETS.get(dataset, {}))
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(dataset=dataset, preset=preset, **settings)

    def validate(self):
        """Raises `ConfigError` naming the flag of the first bad setting."""
        positive_ints = (
            "epochs", "batch_size", "max_seq_length", "hidden_size", "num_blocks",
            "num_heads", "num_intent_clusters", "eval_batch_size", "num_negatives",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{flag_name(name)} must be a positive integer, got {value!r}")
        for name in ("max_users", "patience", "warm_up_epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"{flag_name(name)} must be a non-negative integer, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature must be a positive number, got {self.temperature!r}")
        for name in ("seqcl_weight", "icl_weight", "initializer_range"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{flag_name(name)} must be a non-negative number, got {value!r}")
        for name in ("hidden_dropout", "attention_dropout", "crop_ratio", "mask_ratio",
                     "reorder_ratio"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{flag_name(name)} must be in [0, 1), got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"--hidden-size ({self.hidden_size}) must be a multiple of "
                f"--num-heads ({self.num_heads})"
            )
        for name, allowed in (("contrast_type", CONTRAST_TYPES),
                              ("augmentation", AUGMENTATIONS),
                              ("validation_protocol", PROTOCOLS),
                              ("preset", PRESETS),
                              ("next_item_loss", NEXT_ITEM_LOSSES),
                              ("pooling", POOLINGS),
                              ("seqcl_representation", SEQCL_REPRESENTATIONS),
                              ("view_encodings", VIEW_ENCODINGS),
                              ("kmeans", KMEANS),
                              ("mixed_precision", MIXED_PRECISIONS),
                              ("train_samples", TRAIN_SAMPLES),
                              ("contrast_views", CONTRAST_VIEWS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{flag_name(name)} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.contrast_views == "same_target" and self.train_samples != "prefixes":
            raise ConfigError("--contrast-views same_target needs --train-samples prefixes "
                              "(a sample with one next item)")
        if self.length_buckets:
            # Cut to its longest sequence, a batch changes what these read of padding.
            if self.uses_intents and self.pooling == "mean":
                raise ConfigError("--length-buckets needs a representation that ignores "
                                  "padding: --pooling mean reads it; use --pooling masked_mean")
            if self.uses_instance_contrast and self.seqcl_representation == "flatten":
                raise ConfigError("--length-buckets needs a representation that ignores "
                                  "padding: --seqcl-representation flatten reads it; use "
                                  "masked_mean or last")
        return self

    @property
    def uses_instance_contrast(self):
        """Whether the run has SeqCL, the contrast between two views of a sequence."""
        return self.contrast_type in ("hybrid", "instance")

    @property
    def uses_intents(self):
        """Whether the run needs the E-step (intent loss, or FNM's intent ids)."""
        return self.contrast_type in ("hybrid", "intent") or (
            self.fnm and self.contrast_type == "instance"
        )

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


def check_top_k(top_k, num_items):
    """Raises `ConfigError` unless `top_k` is an integer in `1..num_items`."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_items:
        raise ConfigError(f"--top-k must be an integer in 1..{num_items} (the number of "
                          f"items), got {top_k!r}")


def flag_name(field_name):
    """The command-line flag of a `TrainConfig` field: `num_blocks` is `--num-blocks`."""
    return "--" + field_name.replace("_", "-")
