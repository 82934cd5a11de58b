"""The shared LiveKit voice-agent worker pool: one worker serves every agent."""
