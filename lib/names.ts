/** The names the executable answers to as a CNI plugin; build.mjs makes a link for each. */
export const PLUGIN_NAMES: ReadonlyArray<string> = ['macvlan', 'underlay-macvlan', 'sriov', 'underlay-sriov', 'whereabouts', 'underlay-ipam'];
export const IPAM_TYPES: ReadonlyArray<string> = ['whereabouts', 'underlay-ipam'];
/** The plugins that delegate to an IPAM: naming one of them as `ipam.type` would make it exec itself. */
export const DELEGATING_PLUGINS: ReadonlyArray<string> = PLUGIN_NAMES.filter((name) => !IPAM_TYPES.includes(name));
