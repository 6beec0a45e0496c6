"""Request bodies, validated by pydantic (a wrong type or range is a 422 naming the
field). Fields OpenAI defines and this server does not use are ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

# seeds are JSON integers a client keeps exactly: 64-bit signed
SEED = Field(None, ge=-(2**63), lt=2**63)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class _Sampling(BaseModel):
    """What completions and chat completions share."""

    model_config = ConfigDict(extra="ignore")
    model: StrictStr | None = None
    top_p: StrictFloat | StrictInt = Field(1.0, gt=0.0, le=1.0)
    seed: StrictInt | None = SEED
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(1, ge=1, le=128)


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr]
    max_tokens: StrictInt = Field(16, ge=1)
    temperature: StrictFloat | StrictInt = Field(0.0, ge=0.0, le=2.0)
    # the legacy form: how many top alternatives per token (0: the sampled token's only)
    logprobs: StrictInt | None = Field(None, ge=0, le=20)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def as_template_input(self) -> dict:
        """The message as a chat template reads it: text parts joined."""
        if isinstance(self.content, list):
            text = "".join(p.text for p in self.content)
        else:
            text = self.content or ""
        out = {"role": self.role, "content": text}
        if self.name is not None:
            out["name"] = self.name
        return out


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)  # OpenAI's newer name
    temperature: StrictFloat | StrictInt = Field(1.0, ge=0.0, le=2.0)  # OpenAI's default
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
