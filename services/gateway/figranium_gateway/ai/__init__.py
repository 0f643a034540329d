"""AI providers for the gateway: stored keys, and the chain that fails over between them."""

from figranium_gateway.ai.chain import (
    Accept,
    AiAnswer,
    AiChain,
    AllProvidersFailed,
    AnswerRejected,
    NoAiKeys,
)

__all__ = ["Accept", "AiAnswer", "AiChain", "AllProvidersFailed", "AnswerRejected", "NoAiKeys"]
