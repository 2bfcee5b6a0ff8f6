export const NODE24: string;
export function makeSea(bundle: string, exe: string): void;
