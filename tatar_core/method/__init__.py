"""What the TATAR paper defines: prompts, answer parsing, score scales, rewards, the IAA aspect vocabulary."""
