import { Migration } from '@mikro-orm/migrations';

export class Migration20261204183629_api_keys extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table \`api_key\` (\`id\` text not null, \`prefix\` text not null, \`hash\` text not null, \`user_id\` text not null, \`role\` text not null, \`label\` text null, \`created_at\` datetime not null, \`last_used_at\` datetime null, \`revoked_at\` datetime null, primary key (\`id\`));`);
    this.addSql(`create index \`api_key_prefix_index\` on \`api_key\` (\`prefix\`);`);
    this.addSql(`create unique index \`api_key_hash_unique\` on \`api_key\` (\`hash\`);`);
  }

}
