"""The providers the end-to-end bench races: our trainer (each method) and Hugging Face PEFT prompt tuning."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from e2e_models import separate_copy
from e2e_settings import E2ESettings


def make_trainer(
    loaded: Any,
    method: str,
    settings: E2ESettings,
    max_length: int,
    eval_batch_size: int,
    examples: tuple[Sequence[Any], Sequence[Any]],
) -> Any:
    """Our trainer exactly as ``superpos train`` builds it (paper lr / weight decay per method); ``examples``:
    ``(train, validation)``."""
    from superpos_trainer.config import TrainConfig
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    device = loaded.embedding.weight.device
    config = TrainConfig(
        model=loaded.name,
        task="sst2",
        method=method,
        num_prompt_tokens=settings.num_prompt_tokens,
        num_sampled_tokens=settings.num_sampled_tokens,
        batch_size=settings.batch_size,
        max_length=max_length,
        max_target_length=settings.max_target_length,
        max_new_tokens=settings.max_new_tokens,
        eval_batch_size=eval_batch_size,
        device=str(device),
        progress=False,
    ).resolved()
    return Trainer.from_config(config, get_task("sst2"), examples, loaded, device=device)


class PeftProvider:
    """Hugging Face PEFT prompt tuning on (a copy of) the same frozen model, trained with a plain AdamW loop."""

    def __init__(self, loaded: Any, settings: E2ESettings, bf16: bool) -> None:
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        config = PromptTuningConfig(
            task_type=TaskType.SEQ_2_SEQ_LM,
            num_virtual_tokens=settings.num_prompt_tokens,
            # One prompt for the encoder only, what the model reads (PEFT's seq2seq default allocates a second,
            # unused block of vectors for the decoder).
            num_transformer_submodules=1,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
        self.loaded = separate_copy(loaded)
        self.model = get_peft_model(self.loaded.model, config)
        self.model.eval()  # dropout off, as in our trainer (the config has none anyway)
        self.device = loaded.embedding.weight.device
        self.bf16 = bf16
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The paper's prompt-tuning optimizer (the same as our "prompt" method): AdamW lr 1e-2, weight decay 1e-2.
        self.optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
        self.trainable = sum(p.numel() for p in params)

    def _autocast(self) -> contextlib.AbstractContextManager:
        from superpos_trainer.forward import autocast

        return autocast(self.device, self.bf16)

    def train_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> list[str]:
        from transformers import GenerationConfig

        tok = self.loaded.tokenizer
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            decoder_start_token_id=self.model.config.decoder_start_token_id,
        )
        with self._autocast():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen)
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]
