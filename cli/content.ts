// Placeholder wiring for content commands; filled in by the retention work.
import type { Command } from 'commander';

export function registerContentCommands(_program: Command): void {}
