"""Text processing for BERT-style models: the WordPiece tokenizer (basic tokenization,
WordPiece, encoding with special tokens, truncation and padding, decoding, training)."""
from .tokenizer import WordPieceTokenizer, BertTokenizer, SPECIAL_TOKENS

__all__ = ["WordPieceTokenizer", "BertTokenizer", "SPECIAL_TOKENS"]
from .masking import mask_tokens
