export const ACL_PLUGIN_SOURCE: string;
export const ACL_PLUGIN_BUILD: string;
export const ACL_PLUGIN_PACKAGES: Array<{ pkg: string; file: string }>;
export const ACL_PLUGIN_INSTALL: string;
export function buildBrokerPlugin(options?: { out?: string; log?: (line: string) => void; packages?: Array<{ pkg: string; file: string }> }): string;
