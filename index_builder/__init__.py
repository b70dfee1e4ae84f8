"""Offline builder: product embeddings → versioned, memory-mappable FAISS inner-product index."""
