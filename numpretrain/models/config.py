"""What GPT's and BERT's configs share: checks that the sizes can work, and a JSON round trip.

A config that cannot work (a width not divisible by the heads, a zero layer count, a dropout
of 1) fails when it is made, with a ConfigError naming the field, not later inside a matmul.
"""

from dataclasses import asdict

import numpy as np

from numpretrain.errors import ConfigError, check_heads_divide_width


class ModelConfig:
    """Base of the config dataclasses; subclasses set `model_type` and the `size_fields` to check."""

    model_type = None
    size_fields = ()      # fields that must be positive integers

    def __post_init__(self):
        name = type(self).__name__
        for field in self.size_fields:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"{name}.{field} must be a positive integer, got {value!r}")
        check_heads_divide_width(self.n_embd, self.n_head, name)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{name}.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self):
        return {"model_type": self.model_type, **asdict(self)}

    @classmethod
    def from_dict(cls, config):
        config = dict(config)
        model_type = config.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ConfigError(f"expected a {cls.model_type} config, got model_type={model_type!r}")
        unknown = set(config) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**config)
