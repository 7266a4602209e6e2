/** Roles and what they allow. The permission list is returned with every user. */
import type { UserRole } from './config.js';

export const PERMISSIONS_BY_ROLE: Record<UserRole, readonly string[]> = {
  listener: ['stream:listen', 'chat:send', 'content:report', 'profile:edit', 'track:upload'],
  broadcaster: ['stream:publish'],
  moderator: ['chat:moderate', 'stream:moderate', 'reports:review'],
  admin: ['users:manage', 'roles:grant'],
};

export function permissionsFor(roles: readonly UserRole[]): string[] {
  const all = new Set<string>();
  for (const role of roles) for (const permission of PERMISSIONS_BY_ROLE[role]) all.add(permission);
  // Admins and moderators can do what moderators can; admins everything.
  if (roles.includes('admin')) {
    for (const list of Object.values(PERMISSIONS_BY_ROLE)) for (const permission of list) all.add(permission);
  }
  return [...all].sort();
}

export function hasPermission(roles: readonly UserRole[], permission: string): boolean {
  return permissionsFor(roles).includes(permission);
}
