from .bidirectional import (BiLSTMEncoder, BiTransformerEncoder, BiLSTMDecoder, BiTransformerDecoder,
                            Seq2SeqBiTransformer, bi_self_attention, bi_cross_attention,
                            bidirectional_self_attention, bidirectional_cross_attention)
from .beam import Hypothesis, greedy_search, beam_search, rerank
from .bert import (BertConfig, BertModel, BertForMaskedLM, BertForSequenceClassification,
                   next_token_labels)
from .pretrained import (load_hf_bert, load_hf_state_dict, mean_pooling, normalize,
                         SentenceEncoder, load_sentence_encoder)
