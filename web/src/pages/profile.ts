/**
 * `/profile`: the signed-in user edits their display name, bio and avatar (the seed's profile
 * flow, PUT /auth/profile). Lengths are checked here first so the form can say what is wrong
 * next to the field; the server's checks (lengths again, the avatar's real type and size) are
 * what count, and its answer is shown next to the field it names.
 */
import { ApiError, type Profile, restApi } from '../api.js';
import { withToken } from '../auth.js';
import { errorMessage, h, statusLine } from '../dom.js';
import { sameOriginMedia } from '../media-url.js';
import { whenSignedIn } from '../signed-in.js';

/** The server's limits (signaling/http/routes/auth.ts), repeated to say them up front. */
const DISPLAY_NAME_MAX = 64;
const BIO_MAX = 500;
const AVATAR_TYPES = 'image/png,image/jpeg,image/webp,image/gif';

type FieldName = 'display_name' | 'bio' | 'avatar';

interface Control {
  control: HTMLInputElement | HTMLTextAreaElement;
  error: HTMLElement;
  wrapper: HTMLElement;
}

function control(
  name: FieldName,
  label: string,
  element: HTMLInputElement | HTMLTextAreaElement,
  hint: string,
): Control {
  element.id = `profile-${name}`;
  const hintElement = h('span', { class: 'hint', id: `${element.id}-hint` }, hint);
  const error = h('span', {
    class: 'field-error',
    id: `${element.id}-error`,
    'data-testid': `${name}-error`,
  });
  element.setAttribute('aria-describedby', `${hintElement.id} ${error.id}`);
  const wrapper = h(
    'div',
    { class: 'field' },
    h('label', { for: element.id }, label),
    element,
    hintElement,
    error,
  );
  return { control: element, error, wrapper };
}

function profileForm(): HTMLElement {
  const displayName = control(
    'display_name',
    'Display name',
    h('input', {
      type: 'text',
      name: 'display_name',
      autocomplete: 'nickname',
      'data-testid': 'display-name',
    }),
    `Shown to listeners instead of your username (up to ${DISPLAY_NAME_MAX} characters).`,
  );
  const bio = control(
    'bio',
    'Bio',
    h('textarea', { name: 'bio', rows: 4, 'data-testid': 'bio' }),
    `A few words about you and your shows (up to ${BIO_MAX} characters).`,
  );
  const avatar = control(
    'avatar',
    'New avatar',
    h('input', { type: 'file', name: 'avatar', accept: AVATAR_TYPES, 'data-testid': 'avatar' }),
    'A PNG, JPEG, WebP or GIF image, up to 2 MB.',
  );
  const controls: Record<FieldName, Control> = { display_name: displayName, bio, avatar };
  const currentAvatar = h('img', {
    class: 'avatar',
    alt: 'Your avatar',
    hidden: true,
    'data-testid': 'avatar-image',
  });
  const save = h('button', { type: 'submit', class: 'primary', 'data-testid': 'save-profile' }, 'Save');
  const status = statusLine('profile-status');

  const form = h(
    'form',
    { class: 'panel', 'aria-labelledby': 'profile-heading', novalidate: true, 'aria-busy': 'true' },
    h('h2', { id: 'profile-heading' }, 'Your profile'),
    currentAvatar,
    displayName.wrapper,
    bio.wrapper,
    avatar.wrapper,
    h('div', { class: 'actions' }, save),
    status.element,
  );

  const show = (profile: Profile) => {
    displayName.control.value = profile.display_name ?? '';
    bio.control.value = profile.bio ?? '';
    avatar.control.value = '';
    if (profile.avatar_url) currentAvatar.src = sameOriginMedia(profile.avatar_url);
    currentAvatar.hidden = !profile.avatar_url;
  };

  const clearErrors = () => {
    for (const { control: element, error } of Object.values(controls)) {
      element.removeAttribute('aria-invalid');
      error.textContent = '';
    }
  };
  const invalid = (name: FieldName, message: string) => {
    const { control: element, error } = controls[name];
    element.setAttribute('aria-invalid', 'true');
    error.textContent = message;
    status.error(`Not saved: ${message}`);
    element.focus();
  };

  const check = (): boolean => {
    if ([...displayName.control.value.trim()].length > DISPLAY_NAME_MAX) {
      invalid('display_name', `The display name can have at most ${DISPLAY_NAME_MAX} characters.`);
      return false;
    }
    if ([...bio.control.value].length > BIO_MAX) {
      invalid('bio', `The bio can have at most ${BIO_MAX} characters.`);
      return false;
    }
    return true;
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    if (!check()) return;
    const file = avatar.control instanceof HTMLInputElement ? avatar.control.files?.[0] : undefined;
    const fields = { display_name: displayName.control.value.trim(), bio: bio.control.value };
    let body: FormData | typeof fields = fields;
    if (file) {
      const form = new FormData();
      form.append('display_name', fields.display_name);
      form.append('bio', fields.bio);
      form.append('avatar', file, file.name);
      body = form;
    }
    save.disabled = true;
    status.info('Saving…');
    try {
      show(await withToken((token) => restApi.updateProfile(token, body)));
      status.info('Your profile is saved.');
    } catch (error) {
      const field = error instanceof ApiError ? error.field : undefined;
      const name: FieldName | null =
        field === 'display_name' || field === 'bio'
          ? field
          : field === 'avatar_data' || field === 'avatar'
            ? 'avatar'
            : null;
      if (name) invalid(name, errorMessage(error));
      else if (error instanceof ApiError && error.code === 'payload_too_large')
        invalid('avatar', errorMessage(error));
      else status.error(`Not saved: ${errorMessage(error)}`);
    } finally {
      save.disabled = false;
    }
  });

  status.info('Loading your profile…');
  void withToken((token) => restApi.me(token))
    .then((profile) => {
      show(profile);
      status.clear();
    })
    .catch((error: unknown) => status.error(`Could not load your profile: ${errorMessage(error)}`))
    .finally(() => form.setAttribute('aria-busy', 'false'));
  return form;
}

export function profilePage() {
  return {
    title: 'Your profile',
    render(main: HTMLElement) {
      const container = h('div', {});
      main.append(h('h1', {}, 'Your profile'), container);
      whenSignedIn(container, 'Sign in to edit your profile', profileForm);
    },
  };
}
