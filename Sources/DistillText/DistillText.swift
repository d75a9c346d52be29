// DistillText: text for distillation. A WordPiece tokenizer that reads a Hugging Face
// `tokenizer.json`, BERT-style transformer encoders (all-MiniLM-L6-v2 and smaller students),
// and the text corpora the examples use (Debian's package descriptions).
