export interface Requirement { pkg: string; present(): boolean }
export const REQUIREMENTS: Requirement[];
export function ensurePackages(log?: (line: string) => void): string[];
export function ensureBuilds(log?: (line: string) => void): void;
export function postgresBinDir(): string | null;
export function startTestPostgres(log?: (line: string) => void): Promise<{ url: string; dataDir?: string; stop(): Promise<void> }>;
export function ensureBrokerPlugin(log?: (line: string) => void): void;
export function reapStaleTestPostgres(log?: (line: string) => void, base?: string): string[];
