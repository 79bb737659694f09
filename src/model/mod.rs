//! Qwen2.5-VL in candle. (Being built: issue 4.)
