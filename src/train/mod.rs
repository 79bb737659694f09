//! The GRPO / DAPO / VPPO objective and trainer. (Being built: issue 9.)
